"""Secret references in the inventory, and masked secret values.

The inventory never holds a secret, only a reference to where it lives:

- `env:NAME` -- an environment variable (NAME is `[A-Z_][A-Z0-9_]*`), looked up in the process
  environment first, then in the inventory's `env_file` (KEY=value lines);
- `prefect-secret:NAME` -- a Prefect Secret block (NAME is lowercase letters, digits, dashes),
  loaded from the Prefect API when resolved.

`SecretRef.resolve()` returns a `Secret`, whose `repr`/`str`/format is `***`; only `.reveal()`
gives the raw value, at the last moment, to the library that needs it.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from runbooks.errors import ConfigError

Scheme = Literal["env", "prefect-secret"]

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
PREFECT_SECRET_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "env": (ENV_NAME, "upper-case letters, digits and underscores, not starting with a digit"),
    "prefect-secret": (PREFECT_SECRET_NAME, "lower-case letters, digits and dashes"),
}
REFERENCE_FORMS = "env:NAME or prefect-secret:NAME"
INLINE_SECRET_FIX = (
    "do not write secrets in the inventory: put it in an environment variable and write "
    "env:NAME (or store it in a Prefect Secret block and write prefect-secret:NAME)"
)


class Secret:
    """A secret value that does not show itself: `repr`, `str` and f-strings give `***`.

    It cannot be pickled or serialised, so it never ends up in a Prefect result, a cache file or
    a report by accident: pass the `SecretRef` around and resolve it where it is used.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The raw value. Call it only where a library needs it; never log the result."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a Secret cannot be pickled or serialised; pass its SecretRef and resolve it "
            "where the value is used"
        )

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


class SecretRef:
    """Where a secret lives (`env:NAME` or `prefect-secret:NAME`); shows only the reference.

    Usable as a pydantic field type: the field accepts a reference string and rejects anything
    else, in particular an inline secret, with a message that never holds the rejected value.
    The model must set `hide_input_in_errors=True` (the inventory's models do), or pydantic
    itself prints the rejected input in its `ValidationError`.
    """

    __slots__ = ("name", "scheme")

    def __init__(self, scheme: Scheme, name: str) -> None:
        pattern, rule = _NAME_RULES[scheme]
        if not pattern.fullmatch(name):
            raise ValueError(f"malformed secret reference {scheme}:{name!r}: NAME must be {rule}")
        self.scheme: Scheme = scheme
        self.name = name

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """Parse `env:NAME` / `prefect-secret:NAME`; a ValueError's message never holds `text`
        unless it is recognisably a reference (it starts with a known scheme)."""
        scheme, sep, name = text.partition(":")
        if sep and scheme in _NAME_RULES:
            pattern, rule = _NAME_RULES[scheme]
            if not pattern.fullmatch(name):
                raise ValueError(
                    f"malformed secret reference {text!r}: after '{scheme}:' expected {rule}, "
                    f"e.g. {_example(scheme)}"
                )
            return cls(scheme, name)  # type: ignore[arg-type]
        raise ValueError(
            f"expected a secret reference ({REFERENCE_FORMS}), got an inline value (not shown); "
            f"{INLINE_SECRET_FIX}"
        )

    @staticmethod
    def looks_like_reference(text: str) -> bool:
        """True if `text` starts with a known scheme (well-formed or not)."""
        scheme, sep, _ = text.partition(":")
        return bool(sep) and scheme in _NAME_RULES

    def __str__(self) -> str:
        return f"{self.scheme}:{self.name}"

    def __repr__(self) -> str:
        return f"SecretRef({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretRef):
            return NotImplemented
        return (self.scheme, self.name) == (other.scheme, other.name)

    def __hash__(self) -> int:
        return hash((self.scheme, self.name))

    # -- resolution ------------------------------------------------------------------------

    def resolve(self, env_files: Iterable[Path] = ()) -> Secret:
        """The secret's value, masked. Raises ConfigError naming the reference (never a value)
        and how to provide it."""
        if self.scheme == "env":
            return _resolve_env(self, list(env_files))
        return _resolve_prefect_secret(self)

    async def aresolve(self, env_files: Iterable[Path] = ()) -> Secret:
        """`resolve()` for async code (Prefect blocks are loaded with the async client)."""
        if self.scheme == "env":
            return _resolve_env(self, list(env_files))
        from providers.prefect_secrets import aload_secret_block

        try:
            value = await aload_secret_block(self.name)
        except Exception as err:
            _prefect_secret_failed(self, err)
        return Secret(value)

    # -- pydantic integration ----------------------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": rf"^(env:{ENV_NAME.pattern}|prefect-secret:{PREFECT_SECRET_NAME.pattern})$",
            "examples": ["env:OVH_APPLICATION_SECRET", "prefect-secret:ovh-application-secret"],
        }

    @classmethod
    def _validate(cls, value: Any) -> SecretRef:
        if isinstance(value, SecretRef):
            return value
        if not isinstance(value, str):
            # A number or a mapping here is an inline secret too; say so without showing it.
            raise PydanticCustomError(
                "secret_ref",
                "expected a secret reference ({forms}), got {kind} (not shown); {fix}",
                {"forms": REFERENCE_FORMS, "kind": _kind(value), "fix": INLINE_SECRET_FIX},
            )
        try:
            return cls.parse(value)
        except ValueError as err:
            raise PydanticCustomError("secret_ref", "{reason}", {"reason": str(err)}) from None


def _kind(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else "a value"


def _example(scheme: str) -> str:
    return "env:OVH_APPLICATION_SECRET" if scheme == "env" else "prefect-secret:ovh-app-secret"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (blank lines, `# comments` and a leading `export ` are allowed; a value
    may be quoted). A malformed line is reported by number, never by content."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            f"cannot read env file: {err.strerror}; expected a readable file of KEY=value lines",
            file=path,
        ) from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not ENV_NAME.fullmatch(key):
            raise ConfigError(
                "malformed line (content not shown); expected KEY=value with KEY made of "
                "upper-case letters, digits and underscores",
                file=path,
                line=number,
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _resolve_env(ref: SecretRef, env_files: list[Path]) -> Secret:
    if os.environ.get(ref.name):
        return Secret(os.environ[ref.name])
    for env_file in env_files:
        if env_file.is_file() and (value := read_env_file(env_file).get(ref.name)):
            return Secret(value)
    if env_files:
        files = ", ".join(str(f) for f in env_files)
        where = f"export {ref.name}=... before running drp, or add a line {ref.name}=... to {files}"
        missing = [str(f) for f in env_files if not f.is_file()]
        if missing:
            where += f" (which does not exist yet: {', '.join(missing)})"
    else:
        where = (
            f"export {ref.name}=... before running drp, or name a file of KEY=value lines in "
            "the inventory's env_file"
        )
    raise ConfigError(f"secret {ref} is not set (or empty): {where}", expected=f"a value for {ref}")


def _resolve_prefect_secret(ref: SecretRef) -> Secret:
    from providers.prefect_secrets import load_secret_block

    try:
        value = load_secret_block(ref.name)
    except Exception as err:
        _prefect_secret_failed(ref, err)
    return Secret(value)


def _prefect_secret_failed(ref: SecretRef, err: Exception) -> NoReturn:
    raise ConfigError(
        f"secret {ref} could not be loaded from Prefect ({type(err).__name__}: {err}); create a "
        f"Secret block named {ref.name!r} (Prefect UI: Blocks > Secret, or "
        f"`Secret(value=...).save({ref.name!r})`) and check PREFECT_API_URL",
        expected=f"a Prefect Secret block named {ref.name!r}",
    ) from err
