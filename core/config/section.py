"""`Section`: the base of every config section (the schema's, the data sets', the models' and
the experiments' options). Frozen, with no unknown keys, and no boolean where a number belongs."""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, raw: Any) -> Any:
        """pydantic reads `lr: true` as 1.0; a boolean where a number belongs is a mistake."""
        if isinstance(raw, dict):
            for name, field in cls.model_fields.items():
                if isinstance(raw.get(name), bool) and _numeric(field.annotation):
                    raise ValueError(f"{name}: expected a number, found {str(raw[name]).lower()} (a boolean)")
        return raw


def _numeric(annotation: Any) -> bool:
    """An int or float field (or one that may also be None or a name), not a boolean one."""
    args = typing.get_args(annotation) or (annotation,)
    return bool not in args and any(a in (int, float) for a in args)


Init = Literal["normal", "xavier", "he", "zeros"]  # a model's `init`: the names of `core.nn.init.WEIGHT_INITS`
