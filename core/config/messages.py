"""Pydantic's validation errors rewritten for people: `<file>: <dotted key>: <what is wrong>`.

Pydantic locates an error inside a tagged union with the tag as an extra path part
(`model.mlp.hidden`) and names the alternatives of an `a | b` field the same way; the user wrote
`model.hidden`, so those parts are dropped. An unknown key gets the nearest valid one.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from .schema import Config, DataConfig, ModelConfig


def describe_errors(err: ValidationError, root: type, source: str, set_keys: dict[str, str] | None = None,
                    prefix: tuple = ()) -> str:
    """One line per distinct error of `err`, raised validating `root` from `source`."""
    lines = [_describe(e, root, source, set_keys or {}, prefix) for e in err.errors()]
    return "\n".join(dict.fromkeys(lines))


_TAGGED = {"data": DataConfig, "model": ModelConfig}
_UNION_PART = re.compile(r"^(float|int|str|bool|none|tuple\[.*\]|list\[.*\]|function-\w+\[.*\]|constrained-.*)$")


def _describe(error: dict, root: type, source: str, set_keys: dict[str, str], prefix: tuple = ()) -> str:
    """One line for one pydantic error: `<where>: <dotted key>: <what is wrong>`."""
    loc, model_path = _user_loc(error["loc"]) if root is Config else (tuple(error["loc"]), tuple(error["loc"]))
    valid = _valid_keys(model_path, root)
    loc = prefix + loc
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    where = source
    for key, item in set_keys.items():
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            where = f"--set {item}"
    kind = error["type"]
    found = error.get("input")
    if kind == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6) if loc else []
        suggestion = f"; did you mean '{'.'.join(map(str, loc[:-1] + (hint[0],)))}'?" if hint else ""
        return f"{where}: {dotted}: unknown key{suggestion} (valid keys here: {', '.join(valid)})"
    if kind == "union_tag_invalid":
        tags = error["ctx"]["expected_tags"].replace("'", "")
        return f"{where}: {dotted}.name: unknown {dotted} '{error['ctx']['tag']}'; expected one of: {tags}"
    if kind == "model_attributes_type" or kind == "model_type":
        return f"{where}: {dotted}: expected a mapping (a section of keys), found {_show(found)}"
    if kind == "value_error":
        return f"{where}: {dotted}: {error['msg'].removeprefix('Value error, ')}"
    if kind == "literal_error":
        return f"{where}: {dotted}: expected one of {error['ctx']['expected']}, found {_show(found)}"
    if kind == "missing":
        return f"{where}: {dotted}: required, but not given"
    ctx = error.get("ctx") or {}
    phrase = _EXPECTED.get(kind)
    expected = phrase(ctx) if phrase else error["msg"].removeprefix("Input should be ").removeprefix("Value should be ")
    return f"{where}: {dotted}: expected {expected}, found {_show(found)}"


# pydantic's phrases ("Input should be a valid integer", "String should match pattern '^...$'")
# in the project's words, by error type
_PATTERNS = {
    r"^[A-Za-z0-9_.-]+$": "a name of letters, digits, '_', '.' or '-' (no spaces or slashes)",
    r"^\d+(\.\d+)*$": "a section number such as 4.6",
    r"^(train|val)/\w+$": "a metric such as val/acc or train/loss",
    r"^[A-Za-z0-9_./-]+$": "a summary key such as val/acc",
}
_EXPECTED = {
    "int_type": lambda c: "a whole number", "int_parsing": lambda c: "a whole number",
    "int_from_float": lambda c: "a whole number", "float_type": lambda c: "a number",
    "float_parsing": lambda c: "a number", "bool_type": lambda c: "true or false",
    "bool_parsing": lambda c: "true or false", "string_type": lambda c: "text",
    "list_type": lambda c: "a list", "tuple_type": lambda c: "a list", "dict_type": lambda c: "a mapping",
    "greater_than": lambda c: f"a number above {c['gt']}", "greater_than_equal": lambda c: f"a number of at least {c['ge']}",
    "less_than": lambda c: f"a number below {c['lt']}", "less_than_equal": lambda c: f"a number of at most {c['le']}",
    "finite_number": lambda c: "a finite number",
    "string_too_short": lambda c: f"text of at least {c['min_length']} character(s)",
    "string_too_long": lambda c: f"text of at most {c['max_length']} characters",
    "too_short": lambda c: f"at least {c['min_length']} item(s)", "too_long": lambda c: f"at most {c['max_length']} items",
    "string_pattern_mismatch": lambda c: _PATTERNS.get(c["pattern"], f"text of the form {c['pattern']}"),
}


def _user_loc(loc: tuple) -> tuple[tuple, tuple]:
    """Drop the discriminator tags pydantic inserts (`model.mlp.hidden` -> `model.hidden`).

    Returns the user's dotted location and the location with tags kept (for key look-ups).
    """
    out = []
    i = 0
    while i < len(loc):
        out.append(loc[i])
        if i == 0 and loc[i] in _TAGGED and i + 1 < len(loc):
            i += 1  # skip the tag
        i += 1
    # pydantic names the alternatives of an `a | b` field as extra path parts ("float",
    # "tuple[float, ...]"); they are never the user's keys, which come first
    out = out[:1] + [p for p in out[1:] if not (isinstance(p, str) and _UNION_PART.match(p))]
    return tuple(out), tuple(loc)


def _valid_keys(model_path: tuple, root: type) -> list[str]:
    """The field names of the section that holds the last key of `model_path`."""
    cls: Any = root
    parts = list(model_path[:-1])
    while parts:
        part = parts.pop(0)
        if part in _TAGGED and cls is Config:
            tag = parts.pop(0) if parts else None
            members = typing.get_args(typing.get_args(_TAGGED[part])[0])
            cls = next((m for m in members if m.model_fields["name"].default == tag), members[0])
            continue
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        cls = annotation
    return sorted(cls.model_fields)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
