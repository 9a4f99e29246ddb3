"""The config reference: Markdown generated from the schema, so that it cannot drift from it.

`config_reference()` walks `Config`'s sections in the schema's order: a table per section (dotted
key, type, default, description), one subsection per kind of a section chosen by `name` (`data`,
`model`), and one per nested section (`optimizer.schedule`). The experiments' options live in
`dlrun.experiments`, which `core` never imports; whoever calls this passes them in
(`docs/generate.py` writes docs/config-reference.md this way). Imports pydantic only, no JAX.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .schema import Config

HEADER = """# Config reference

Every key a config file may hold, with its type and default. This page is generated from the
schema (`core/config/schema.py`, `models.py`, `data.py`) and the experiments' options by
`python docs/generate.py`; change those, not this page. A file holds only what differs from the
defaults, `base: FILE` (read before validation) extends another file, and `dlrun show-config
CONFIG` prints a config with every default filled in. How to write one: [configs.md](configs.md).
"""
EXPERIMENTS_NOTE = "Besides `train` (the generic loop), `experiment.name` names an experiment; its options sit beside it."


def config_reference(experiments: dict[str, type[BaseModel]] | None = None) -> str:
    """The reference of every config key, as Markdown.

    Args:
        experiments: experiment name -> the options class of the keys beside `experiment.name`
            (`{name: e.options for name, e in dlrun.experiments.EXPERIMENTS.items()}`); listed
            sorted by name. None leaves them out.

    Returns:
        The page, ending with a newline; the same schema always gives the same text.
    """
    fields = Config.model_fields
    scalars = [name for name, field in fields.items() if _section_class(field.annotation) is None
               and not _variants(field.annotation)]
    sections = [name for name in fields if name not in scalars]
    lines = [HEADER, "Sections: " + ", ".join(f"[{n}](#{anchor(n)})" for n in ["top level", *sections]) + ".", ""]
    lines += ["## top level", "", *_table("", Config, keep=scalars)]
    for name in sections:
        field = fields[name]
        variants = _variants(field.annotation)
        if variants:
            lines += _union(name, field, variants)
        else:
            lines += _section(name, 2, _section_class(field.annotation), name, _optional_note(field))
        if name == "experiment" and experiments:
            lines += _experiments(experiments)
    return "\n".join(lines).rstrip("\n") + "\n"


def _union(key: str, field: FieldInfo, variants: list[type[BaseModel]]) -> list[str]:
    default = field.get_default(call_default_factory=True)
    names = ", ".join(f"`{_name(cls)}`" for cls in variants)
    intro = (f"One of {len(variants)} kinds, chosen by `{key}.name`: {names}. Default: `{_name(type(default))}`, "
             f"which a `{key}:` section without `name` also means.")
    lines = [f"## {key}", "", intro, ""]
    for cls in variants:
        lines += _section(f"{key}: {_name(cls)}", 3, cls, key)
    return lines


def _experiments(experiments: dict[str, type[BaseModel]]) -> list[str]:
    lines = [EXPERIMENTS_NOTE, ""]
    for name in sorted(experiments):
        lines += _section(f"experiment: {name}", 3, experiments[name], "experiment", skip=("name",))
    return lines


def _section(title: str, level: int, cls: type[BaseModel], prefix: str, note: str = "",
             skip: tuple[str, ...] = ()) -> list[str]:
    """A heading, the class docstring's first paragraph, its table, then its nested sections."""
    lines = [f"{'#' * level} {title}", ""]
    text = " ".join(part for part in (_first_paragraph(cls), note) if part)
    lines += [text, ""] if text else []
    fields = {n: f for n, f in cls.model_fields.items() if n not in skip}
    keep = [n for n, f in fields.items() if not _section_class(f.annotation)]
    lines += _table(prefix, cls, keep) if keep else [] if fields else ["No options.", ""]
    for name, field in fields.items():  # nested sections, and the items of a list of sections
        key, inner, note = _key(prefix, name), _section_class(field.annotation), _optional_note(field)
        if inner is None and _item_class(field.annotation):
            key, inner, note = key + "[]", _item_class(field.annotation), "Each item of the list:"
        lines += _section(key, level + 1, inner, key, note) if inner else []
    return lines


def _table(prefix: str, cls: type[BaseModel], keep: list[str]) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    order = sorted(keep, key=lambda n: n != "name")  # the kind's name first, then the schema's order
    for name in order:
        field = cls.model_fields[name]
        rows.append(f"| `{_key(prefix, name)}` | `{_pipes(_type(field.annotation, field.metadata))}` | "
                    f"{_default(field)} | {_escape(field.description or '')} |")
    return [*rows, ""]


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _name(cls: type[BaseModel]) -> str:
    return str(cls.model_fields["name"].default)


def _first_paragraph(cls: type) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    return _escape(" ".join(inspect.cleandoc(doc).split("\n\n")[0].split())) if doc else ""


def _optional_note(field: FieldInfo) -> str:
    optional = type(None) in typing.get_args(field.annotation) and field.default is None
    return "Optional: the default `null` leaves the whole section out." if optional else ""


def _section_class(annotation: Any) -> type[BaseModel] | None:
    """The model class of a nested section (`X` or `X | None`), or None for a plain value."""
    members = [m for m in _union_members(annotation) if m is not type(None)]
    return members[0] if len(members) == 1 and _is_model(members[0]) else None


def _item_class(annotation: Any) -> type[BaseModel] | None:
    """The model class of a list of sections (`tuple[X, ...]`), or None."""
    args = typing.get_args(annotation)
    tuple_of = typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis
    return args[0] if tuple_of and _is_model(args[0]) else None


def _variants(annotation: Any) -> list[type[BaseModel]]:
    """The kinds of a section that is a union of models told apart by their `name`."""
    members = _union_members(annotation)
    return list(members) if len(members) > 1 and all(_is_model(m) and "name" in m.model_fields for m in members) else []


def _union_members(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else (annotation,)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type(annotation: Any, constraints: typing.Iterable[Any] = ()) -> str:
    """A type as a config's reader thinks of it: `int > 0`, `a | b`, `list of float`, `str | null`."""
    constraints = list(constraints)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        inner = [m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        return _type(args[0], [*constraints, *inner])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        text = " | ".join(_type(a, constraints) for a in args if a is not type(None))
        return text + " | null" if type(None) in args else text
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return "list of " + _inner(args[0]) + _limits(constraints, "items")
        return "[" + ", ".join(_type(a) for a in args) + "]"
    if origin is dict:
        if _is_model(args[1]):  # keyed by the user's names; the section is documented where it stands alone
            return f"mapping of {_inner(args[0])} to `{args[1].__name__}` sections"
        return f"mapping of {_inner(args[0])} to {_inner(args[1])}"
    if _is_model(annotation):
        return "sections (below)"
    return getattr(annotation, "__name__", str(annotation)) + _limits(constraints, "characters")


def _inner(annotation: Any) -> str:
    """A list's items or a mapping's keys and values: choices in brackets, `list of (a | b)`."""
    text = _type(annotation)
    return f"({text})" if " | " in text else text


_BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", ">="), (at.Lt, "lt", "<"), (at.Le, "le", "<="))


def _limits(constraints: list[Any], unit: str) -> str:
    """Bounds, lengths and patterns: ` > 0`, ` >= 0, < 1`, ` (at least 1 item)`."""
    bounds = [f"{sign} {getattr(c, attr)}" for kind, attr, sign in _BOUNDS for c in constraints if isinstance(c, kind)]
    text = " " + ", ".join(bounds) if bounds else ""
    for c in constraints:
        if isinstance(c, at.MinLen):
            text += f" (at least {c.min_length} {unit[:-1] if c.min_length == 1 else unit})"
        if getattr(c, "pattern", None):
            text += f" matching {c.pattern}"
    return text


def _default(field: FieldInfo) -> str:
    return "required" if field.is_required() else f"`{_pipes(_value(field.get_default(call_default_factory=True)))}`"


def _value(value: Any) -> str:
    """A default as YAML would spell it: `null`, `true`, `0.01`, `[256]`, `{"go .": "va !"}`, `relu`."""
    return (value or '""') if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _pipes(text: str) -> str:
    """Safe inside a table cell, in a code span too (GitHub splits cells before reading spans)."""
    return text.replace("|", "\\|")


def _escape(text: str) -> str:
    """Prose safe inside a table cell: pipes escaped; outside code spans (where a backslash would
    show) `<run>` is not taken for an HTML tag, nor `*` for emphasis."""
    parts = _pipes(text).split("`")
    return "`".join(part if i % 2 else part.replace("<", "\\<").replace("*", "\\*") for i, part in enumerate(parts))
