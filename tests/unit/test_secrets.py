"""Secret references and masked values: nothing shows a secret unless `.reveal()` is asked."""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from runbooks.errors import ConfigError
from runbooks.secrets import Secret, SecretRef, read_env_file

VALUE = "pa55-Wörd=with=equals"


class Holder(BaseModel):
    # As in every inventory model: pydantic would otherwise print a rejected input.
    model_config = ConfigDict(hide_input_in_errors=True)

    password: SecretRef


# -- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "name"),
    [
        ("env:OVH_APPLICATION_SECRET", "env", "OVH_APPLICATION_SECRET"),
        ("env:_X1", "env", "_X1"),
        ("prefect-secret:ovh-app-secret", "prefect-secret", "ovh-app-secret"),
        ("prefect-secret:k2", "prefect-secret", "k2"),
    ],
)
def test_well_formed_references_parse(text: str, scheme: str, name: str) -> None:
    ref = SecretRef.parse(text)
    assert (ref.scheme, ref.name, str(ref)) == (scheme, name, text)
    assert repr(ref) == f"SecretRef({text!r})"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("env:lower", "malformed secret reference 'env:lower': after 'env:' expected upper-case"),
        ("env:1ABC", "malformed secret reference 'env:1ABC'"),
        ("env:", "malformed secret reference 'env:'"),
        (
            "prefect-secret:Upper_Case",
            "malformed secret reference 'prefect-secret:Upper_Case': after 'prefect-secret:' "
            "expected lower-case letters",
        ),
        ("prefect-secret:-dash", "malformed secret reference 'prefect-secret:-dash'"),
    ],
)
def test_malformed_references_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        SecretRef.parse(text)


@pytest.mark.parametrize("inline", ["hunter2-Secret", "vault:abc:def", "Bearer x.y.z"])
def test_an_inline_value_is_refused_without_being_shown(inline: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Holder(password=inline)
    text = str(caught.value)
    assert inline not in text
    assert "put it in an environment variable and write env:NAME" in text


def test_a_number_is_an_inline_secret_too() -> None:
    with pytest.raises(ValidationError) as caught:
        Holder.model_validate({"password": 918273})
    assert "918273" not in str(caught.value)
    assert "got a number (not shown)" in str(caught.value)


def test_reference_field_serialises_and_documents_itself() -> None:
    holder = Holder(password="env:DB_PASSWORD")
    assert holder.password == SecretRef("env", "DB_PASSWORD")
    assert holder.model_dump() == {"password": "env:DB_PASSWORD"}
    assert holder.model_dump_json() == '{"password":"env:DB_PASSWORD"}'
    schema = Holder.model_json_schema()["properties"]["password"]
    assert schema["type"] == "string"
    assert "env:" in schema["pattern"]


# -- masked values ----------------------------------------------------------------------------


def test_a_secret_shows_as_stars_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(VALUE)
    logging.getLogger("drp.test").warning("password=%s %r", secret, secret)

    assert repr(secret) == str(secret) == f"{secret}" == f"{secret!r}" == "***"
    assert f"{secret:>10}" == "***"
    assert VALUE not in repr([secret, {"p": secret}])
    assert VALUE not in caplog.text
    assert secret.reveal() == VALUE


def test_a_secret_refuses_to_be_pickled() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(VALUE))


def test_secrets_compare_by_value_and_copy_as_themselves() -> None:
    secret = Secret(VALUE)
    assert secret == Secret(VALUE)
    assert secret != Secret("other")
    assert copy.deepcopy(secret) is secret
    assert not Secret("")


# -- resolution -------------------------------------------------------------------------------


def test_env_reference_resolves_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRP_TEST_PASSWORD", VALUE)
    secret = SecretRef.parse("env:DRP_TEST_PASSWORD").resolve()
    assert isinstance(secret, Secret)
    assert secret.reveal() == VALUE


def test_env_reference_falls_back_to_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRP_TEST_PASSWORD", raising=False)
    env_file = tmp_path / "lab.env"
    env_file.write_text(f"# generated\n\nOTHER=1\nDRP_TEST_PASSWORD={VALUE}\n")

    assert SecretRef.parse("env:DRP_TEST_PASSWORD").resolve([env_file]).reveal() == VALUE


def test_the_environment_wins_over_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "lab.env"
    env_file.write_text("DRP_TEST_PASSWORD=from-file\n")
    monkeypatch.setenv("DRP_TEST_PASSWORD", "from-env")
    assert SecretRef.parse("env:DRP_TEST_PASSWORD").resolve([env_file]).reveal() == "from-env"

    monkeypatch.setenv("DRP_TEST_PASSWORD", "")  # empty counts as unset
    assert SecretRef.parse("env:DRP_TEST_PASSWORD").resolve([env_file]).reveal() == "from-file"


def test_unresolved_reference_names_it_and_how_to_provide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRP_TEST_MISSING", raising=False)
    env_file = tmp_path / "lab.env"
    env_file.write_text(f"DRP_TEST_OTHER={VALUE}\n")

    with pytest.raises(ConfigError) as caught:
        SecretRef.parse("env:DRP_TEST_MISSING").resolve([env_file])
    message = str(caught.value)
    assert message.startswith("secret env:DRP_TEST_MISSING is not set (or empty): ")
    assert f"add a line DRP_TEST_MISSING=... to {env_file}" in message
    assert VALUE not in message


def test_unresolved_reference_without_env_file_says_where_to_declare_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DRP_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError, match="name a file of KEY=value lines in the inventory"):
        SecretRef.parse("env:DRP_TEST_MISSING").resolve()
    with pytest.raises(ConfigError, match="which does not exist yet"):
        SecretRef.parse("env:DRP_TEST_MISSING").resolve([tmp_path / "absent.env"])


def test_env_file_syntax(tmp_path: Path) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_text(
        "# comment\nexport A=1\nB = spaced \nC='single quoted'\nD=\"double\"\nE=base64+/==\n"
    )
    assert read_env_file(env_file) == {
        "A": "1",
        "B": "spaced",
        "C": "single quoted",
        "D": "double",
        "E": "base64+/==",
    }


def test_a_malformed_env_file_line_is_reported_by_number_not_content(tmp_path: Path) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_text(f"A=1\nlowercase={VALUE}\n")
    with pytest.raises(ConfigError) as caught:
        read_env_file(env_file)
    assert str(caught.value).startswith(f"{env_file}:2: malformed line (content not shown)")
    assert VALUE not in str(caught.value)


# -- Prefect Secret blocks (a real Prefect API) -------------------------------------------------


@pytest.fixture
def prefect_api(prefect_server: Any) -> Iterator[None]:
    """The session's real Prefect server (tests/conftest.py)."""
    yield


@pytest.mark.prefect
def test_prefect_secret_reference_resolves_from_a_secret_block(prefect_api: None) -> None:
    from prefect.blocks.system import Secret as SecretBlock

    SecretBlock(value=VALUE).save("drp-test-secret", overwrite=True)
    secret = SecretRef.parse("prefect-secret:drp-test-secret").resolve()
    assert repr(secret) == "***"
    assert secret.reveal() == VALUE


@pytest.mark.prefect
def test_missing_prefect_secret_block_says_how_to_create_it(prefect_api: None) -> None:
    with pytest.raises(ConfigError) as caught:
        SecretRef.parse("prefect-secret:drp-no-such-block").resolve()
    message = str(caught.value)
    assert message.startswith("secret prefect-secret:drp-no-such-block could not be loaded")
    assert "create a Secret block named 'drp-no-such-block'" in message


@pytest.mark.prefect
def test_prefect_secret_resolves_in_async_code(prefect_api: None) -> None:
    from prefect.blocks.system import Secret as SecretBlock

    ref = SecretRef.parse("prefect-secret:drp-test-async")

    async def under_an_event_loop() -> tuple[str, str]:
        await SecretBlock(value=VALUE).asave("drp-test-async", overwrite=True)
        # the sync path must also work when an event loop is running
        return (await ref.aresolve()).reveal(), ref.resolve().reveal()

    assert asyncio.run(under_an_event_loop()) == (VALUE, VALUE)
