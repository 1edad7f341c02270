"""URL checks: does an environment serve, through a given address or through DNS?

Before any DNS change, the DRP server is checked through its own address with the site's Host
header (and, for https, the site's name for SNI and certificate checks), exactly as a browser
will reach it once DNS points there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx


@dataclass(frozen=True)
class UrlProbe:
    url: str
    address: str | None  # connect here instead of resolving the URL's host; None = resolve
    status: int | None
    seconds: float
    matched_text: bool | None
    error: str | None = None

    def problems(
        self, expected_status: int, expected_text: str | None, max_seconds: float
    ) -> list[str]:
        if self.error:
            return [self.error]
        found = []
        if self.status != expected_status:
            found.append(f"status {self.status}, expected {expected_status}")
        if expected_text is not None and not self.matched_text:
            found.append(f"the page does not contain {expected_text!r}")
        if self.seconds > max_seconds:
            found.append(f"answered in {self.seconds:.1f} s, more than {max_seconds:g} s")
        return found

    def sentence(self) -> str:
        via = f" through {self.address}" if self.address else ""
        if self.error:
            return f"{self.url}{via}: {self.error}"
        return f"{self.url}{via} answered {self.status} in {self.seconds:.2f} s"


def probe_url(
    url: str,
    *,
    address: str | None = None,
    expected_text: str | None = None,
    timeout: float = 10.0,
    resolver: dict[str, str] | None = None,
) -> UrlProbe:
    """GET `url`; connect to `address` (or to `resolver[host]`) when given, keeping the Host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    target = address or (resolver or {}).get(host)
    request_url = url
    headers = {"User-Agent": "drp-url-check"}
    extensions: dict[str, str] = {}
    if target:
        netloc = f"[{target}]" if ":" in target else target
        if parts.port:
            netloc += f":{parts.port}"
        request_url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        headers["Host"] = parts.netloc
        if parts.scheme == "https":
            extensions["sni_hostname"] = host
    t0 = time.monotonic()
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.get(request_url, headers=headers, extensions=extensions)
    except httpx.HTTPError as err:
        return UrlProbe(url, target, None, time.monotonic() - t0, None, f"no answer: {err}")
    seconds = time.monotonic() - t0
    matched = None if expected_text is None else expected_text in response.text
    return UrlProbe(url, target, response.status_code, seconds, matched)
