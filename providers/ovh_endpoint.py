"""Endpoint names for the official `ovh` client beyond OVH's own regions.

`ovh.Client(endpoint=NAME)` accepts only names found in `ovh.client.ENDPOINTS` (anything else
raises `InvalidRegion`). To drive the lab's OVH emulator (or any API-compatible URL) through the
unmodified client, we add our name to that table; OVH's own names are never redefined.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import ovh.client

LAB_ENDPOINT_NAME = "drp-lab"  # same as lab.topology.OVH_ENDPOINT_NAME
LAB_ENDPOINT_URL = "http://127.0.10.60:8080/1.0"  # lab.topology OVH_ADDRESS:OVH_PORT

# The names the package ships with, taken before anything of ours is added.
OVH_ENDPOINT_NAMES = frozenset(ovh.client.ENDPOINTS)


def register_endpoint(name: str, url: str) -> None:
    """Make `name` usable as `ovh.Client(endpoint=name)`, pointing at `url` (ending in /1.0).

    Registering the same name with the same URL again does nothing. Raises ValueError for one
    of OVH's own names, for a name already registered with another URL, or for a URL that is
    not http(s).
    """
    if name in OVH_ENDPOINT_NAMES:
        raise ValueError(
            f"{name!r} is one of OVH's own endpoints ({ovh.client.ENDPOINTS[name]}); "
            "pass it to ovh.Client directly, or register the URL under another name"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint URL {url!r} is not an http(s) URL like {LAB_ENDPOINT_URL}")
    current = ovh.client.ENDPOINTS.get(name)
    if current is not None and current != url:
        raise ValueError(
            f"endpoint {name!r} is already registered for {current}; choose another name for {url}"
        )
    ovh.client.ENDPOINTS[name] = url


def register_lab_endpoint() -> str:
    """Registers the lab emulator's endpoint and returns its name, for `ovh.Client(endpoint=)`."""
    register_endpoint(LAB_ENDPOINT_NAME, LAB_ENDPOINT_URL)
    return LAB_ENDPOINT_NAME
