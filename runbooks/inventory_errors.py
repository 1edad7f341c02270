"""Turn YAML and pydantic errors into `file:line: field: message` problems.

The YAML is read once into plain data and once as nodes, so that every field path (such as
`("environments", 0, "databases", 1, "engine")`) maps to the line it is written on. Messages
say what was expected; a rejected value is shown only where it cannot be a secret.
"""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from runbooks.errors import ConfigError
from runbooks.inventory import PROBLEMS_ERROR, Loc, dotted

Positions = dict[Loc, int]

# Error types whose input may be shown: they are raised on fields that never hold secrets.
_SHOWS_INPUT = {
    "literal_error",
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "bool_type",
    "bool_parsing",
    "ip_v4_address",
    "ip_v6_address",
    "ip_any_address",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "finite_number",
}
# Deeper than any inventory needs (about 6 levels); refused before it can exhaust the stack.
MAX_DEPTH = 32
TOO_DEEP = (
    f"nested more than {MAX_DEPTH} levels deep; expected an inventory a few levels deep "
    "(see config/site.example.yaml)"
)


def read_yaml(path: str | Path) -> tuple[Any, Positions, list[ConfigError]]:
    """The file's data, the line of every field, and problems found while reading it.

    Data that is not a mapping cannot be validated; a duplicate key is reported but does not
    stop validation (the last value wins, as in any YAML reader).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return (
            None,
            {},
            [
                _problem(
                    path,
                    None,
                    "",
                    "file not found; expected an inventory YAML "
                    "file (see config/site.example.yaml)",
                )
            ],
        )
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        return None, {}, [_problem(path, None, "", f"cannot read the file ({reason})")]

    if (deep_at := _too_deep_line(text)) is not None:
        return None, {}, [_too_deep(path, deep_at)]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        detail = " ".join(str(p) for p in (err.context, err.problem) if p)
        line = mark.line + 1 if mark else None
        return (
            None,
            {},
            [
                _problem(
                    path,
                    line,
                    "",
                    f"invalid YAML: {detail}; expected valid "
                    "YAML (check indentation, quoting and ':' after keys)",
                )
            ],
        )
    except yaml.YAMLError as err:
        return None, {}, [_problem(path, None, "", f"invalid YAML: {err}")]
    except RecursionError:
        return None, {}, [_too_deep(path, loader.line + 1)]
    finally:
        loader.dispose()

    positions: Positions = {(): 1}
    problems: list[ConfigError] = []
    if node is not None:
        _record_positions(node, (), positions, problems, path, set())
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        problems.append(
            _problem(
                path,
                1,
                "",
                f"expected a mapping at the top level (name:, customer:, hosts:, ...), got {got}",
            )
        )
    return data, positions, problems


def _record_positions(
    node: yaml.Node,
    loc: Loc,
    positions: Positions,
    problems: list[ConfigError],
    path: str | Path,
    stack: set[int],
) -> None:
    if id(node) in stack:  # a recursive alias; the data check reports it
        return
    stack = stack | {id(node)}
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key == "<<":  # merge key: its fields are recorded where they are written
                _record_positions(value_node, loc, positions, problems, path, stack)
                continue
            if key in first_line:
                problems.append(
                    _problem(
                        path,
                        line,
                        dotted((*loc, key)),
                        f"duplicate key {key!r} (first at "
                        f"line {first_line[key]}); expected each key once",
                    )
                )
                continue
            first_line[key] = line
            positions[(*loc, key)] = line
            _record_positions(value_node, (*loc, key), positions, problems, path, stack)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            positions[(*loc, index)] = item.start_mark.line + 1
            _record_positions(item, (*loc, index), positions, problems, path, stack)


def _too_deep_line(text: str) -> int | None:
    """The line where the YAML goes deeper than MAX_DEPTH, if it does.

    The parser is iterative, unlike the composer and pydantic: it reads a file nested 5,000
    levels deep without exhausting the stack, so the depth is measured before either runs. A
    syntax error is left to the reader proper, which reports it with its line."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return event.start_mark.line + 1 if event.start_mark else 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None


def _too_deep(path: str | Path, line: int) -> ConfigError:
    return _problem(path, line, "", TOO_DEEP)


def validation_problems(
    error: ValidationError,
    root: type[BaseModel],
    path: str | Path,
    data: Any,
    positions: Positions,
) -> list[ConfigError]:
    """One ConfigError per problem, sorted by line, each naming file, line and field."""
    problems: list[ConfigError] = []
    for detail in error.errors():
        display, at_type = _walk(root, detail["loc"])
        if detail["type"] == PROBLEMS_ERROR:
            for relative, message in detail["ctx"]["problems"]:
                problems.append(_located(path, positions, (*display, *relative), message))
            continue
        display, message = _explain(detail, display, at_type, root)
        problems.append(_located(path, positions, display, message))
    return sorted(problems, key=lambda p: (p.line or 0, p.field or ""))


def _located(path: str | Path, positions: Positions, loc: Loc, message: str) -> ConfigError:
    line = 1
    for size in range(len(loc), -1, -1):
        if loc[:size] in positions:
            line = positions[loc[:size]]
            break
    return _problem(path, line, dotted(loc), message)


def _problem(path: str | Path, line: int | None, field: str, message: str) -> ConfigError:
    expected = message.split("expected ", 1)[1] if "expected " in message else None
    return ConfigError(message, file=path, line=line, field=field or None, expected=expected)


def _explain(detail: Any, loc: Loc, at_type: Any, root: type[BaseModel]) -> tuple[Loc, str]:
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    value = detail.get("input")
    got = f", got {_shown(value)}" if kind in _SHOWS_INPUT else ""

    if kind == "missing":
        parent = _model_of(_walk(root, loc[:-1])[1])
        field = parent.model_fields.get(str(loc[-1])) if parent else None
        what = (
            _lower_first(field.description.rstrip("."))
            if field and field.description
            else ("a value")
        )
        return loc, f"missing; expected {what}"
    if kind == "extra_forbidden":
        parent = _model_of(_walk(root, loc[:-1])[1])
        allowed = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown field {loc[-1]!r}{hint}; expected one of: {', '.join(allowed)}"
    if kind == "literal_error":
        return loc, f"expected one of {ctx['expected'].replace(' or ', ', ')}{got}"
    if kind == "union_tag_invalid":
        tag_field = ctx["discriminator"].strip("'\"")
        return (*loc, tag_field), f"expected one of {ctx['expected_tags']}, got {ctx['tag']!r}"
    if kind == "union_tag_not_found":
        tag_field = ctx["discriminator"].strip("'\"")
        tags = ", ".join(repr(t) for t in _tags(at_type, tag_field))
        return (*loc, tag_field), f"missing; expected one of {tags}"
    if kind in ("value_error", "assertion_error"):
        return loc, str(ctx.get("error", detail["msg"]))
    if kind == "secret_ref":
        return loc, detail["msg"]
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return loc, f"expected a whole number{got}"
    if kind in ("float_type", "float_parsing"):
        return loc, f"expected a number{got}"
    if kind == "finite_number":
        return loc, f"expected a finite number (never .inf or .nan){got}"
    if kind in ("bool_type", "bool_parsing"):
        return loc, f"expected true or false{got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        bound = next(iter(ctx.values()))
        bound = f"{bound:g}" if isinstance(bound, float) else bound  # 0, not 0.0
        return loc, f"expected a number {sign} {bound}{got}"
    if kind == "ip_v4_address":
        return loc, f"expected an IPv4 address such as 203.0.113.10{got}"
    if kind == "ip_v6_address":
        return loc, f"expected an IPv6 address such as 2001:db8::10{got}"
    if kind == "ip_any_address":
        return loc, f"expected an IP address such as 203.0.113.10 or 2001:db8::10{got}"
    if kind == "too_short":
        return loc, f"expected at least {ctx['min_length']} item(s), got {ctx['actual_length']}"
    if kind == "list_type":
        return loc, f"expected a list (lines starting with '- '), got {_kind(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping (indented 'key: value' lines), got {_kind(value)}"
    if kind == "string_type":
        return loc, f"expected text, got {_kind(value)}"
    return loc, f"{detail['msg']}; expected a valid value"


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Loc, Any]:
    """Follow a pydantic error location through the model types.

    Returns the location as the user wrote it (without the union tags and `[key]` markers
    pydantic inserts) and the type expected at its end (None when unknown).
    """
    display: list[str | int] = []
    current: Any = root
    for part in loc:
        if part == "[key]":
            continue
        unwrapped = _unwrap(current)
        members = _union_models(unwrapped)
        if members and isinstance(part, str):
            chosen = next((m for m in members if _tag_of(m, part)), None)
            if chosen is not None:
                current = chosen
                continue
        display.append(part)
        model = _model_of(unwrapped)
        if model is not None:
            field = model.model_fields.get(part) if isinstance(part, str) else None
            current = field.annotation if field else None
        elif get_origin(unwrapped) is list and isinstance(part, int):
            current = get_args(unwrapped)[0]
        elif get_origin(unwrapped) is dict:
            current = get_args(unwrapped)[1]
        else:
            current = None
    return tuple(display), current


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _union_models(tp: Any) -> list[type[BaseModel]]:
    if get_origin(tp) not in (Union, types.UnionType):
        return []
    return [m for m in get_args(tp) if isinstance(m, type) and issubclass(m, BaseModel)]


def _model_of(tp: Any) -> type[BaseModel] | None:
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _tag_of(model: type[BaseModel], tag: str) -> bool:
    for field in model.model_fields.values():
        if get_origin(field.annotation) is Literal and get_args(field.annotation) == (tag,):
            return True
    return False


def _tags(tp: Any, tag_field: str) -> list[str]:
    tags: list[str] = []
    for model in _union_models(_unwrap(tp)):
        field = model.model_fields.get(tag_field)
        if field is not None:
            tags.extend(get_args(field.annotation))
    return tags


def _lower_first(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _kind(value: Any) -> str:
    if value is None:
        return "an empty value"
    names = {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _shown(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
