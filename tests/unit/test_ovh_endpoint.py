"""Registering endpoint names for the official ovh client."""

from __future__ import annotations

import re

import ovh.client
import pytest

from lab import topology
from providers.ovh_endpoint import (
    LAB_ENDPOINT_NAME,
    LAB_ENDPOINT_URL,
    register_endpoint,
    register_lab_endpoint,
)


@pytest.fixture(autouse=True)
def _own_endpoint_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers into a copy: the names it adds vanish afterwards."""
    monkeypatch.setattr(ovh.client, "ENDPOINTS", dict(ovh.client.ENDPOINTS))


def test_registered_name_points_at_its_url() -> None:
    register_endpoint("drp-test", "http://127.0.11.60:8080/1.0")
    assert ovh.client.ENDPOINTS["drp-test"] == "http://127.0.11.60:8080/1.0"


def test_registering_again_with_the_same_url_is_a_no_op() -> None:
    register_endpoint("drp-test", "http://127.0.11.60:8080/1.0")
    register_endpoint("drp-test", "http://127.0.11.60:8080/1.0")
    assert ovh.client.ENDPOINTS["drp-test"] == "http://127.0.11.60:8080/1.0"


def test_a_name_is_not_moved_to_another_url() -> None:
    register_endpoint("drp-test", "http://127.0.11.60:8080/1.0")
    with pytest.raises(ValueError, match=re.escape("already registered for http://127.0.11.60")):
        register_endpoint("drp-test", "http://127.0.11.61:8080/1.0")
    assert ovh.client.ENDPOINTS["drp-test"] == "http://127.0.11.60:8080/1.0"


@pytest.mark.parametrize("name", ["ovh-eu", "ovh-ca", "kimsufi-eu"])
def test_ovh_own_names_are_never_redefined(name: str) -> None:
    original = ovh.client.ENDPOINTS[name]
    with pytest.raises(ValueError, match="one of OVH's own endpoints"):
        register_endpoint(name, "http://127.0.11.60:8080/1.0")
    assert ovh.client.ENDPOINTS[name] == original


def test_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="not an http"):
        register_endpoint("drp-test", "127.0.11.60:8080/1.0")
    assert "drp-test" not in ovh.client.ENDPOINTS


def test_lab_endpoint_matches_the_lab_layout() -> None:
    assert register_lab_endpoint() == LAB_ENDPOINT_NAME == topology.OVH_ENDPOINT_NAME
    expected = f"http://{topology.OVH_ADDRESS}:{topology.OVH_PORT}/1.0"
    assert ovh.client.ENDPOINTS[LAB_ENDPOINT_NAME] == LAB_ENDPOINT_URL == expected
