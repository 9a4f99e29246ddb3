"""What may change between a run and its resumption: how it is shown and tracked, and more
epochs. Everything else would silently train another run on top of the first."""

from __future__ import annotations

from typing import Any

from .loading import flatten
from .schema import Config

# config keys a resume may change: how a run is shown and tracked, not what it trains
HOW_IT_IS_WATCHED = ("trainer.progress", "trainer.log_to", "trainer.mlflow_uri")


def unsafe_changes(saved: Config, now: Config) -> list[str]:
    """The keys whose change from `saved` to `now` a resume must refuse, each with both values;
    trainer.epochs may grow, unless a cosine schedule's length depends on it."""
    before, after = flatten(saved.model_dump(mode="json")), flatten(now.model_dump(mode="json"))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    unsafe = [f"{k} ({_show(before.get(k))} -> {_show(after.get(k))})" for k in changed
              if k not in ("trainer.epochs", *HOW_IT_IS_WATCHED)]
    if "trainer.epochs" in changed:
        if now.trainer.epochs < saved.trainer.epochs:
            unsafe.append(f"trainer.epochs ({saved.trainer.epochs} -> {now.trainer.epochs}: fewer than before)")
        if now.optimizer.schedule.name == "cosine" and now.optimizer.schedule.length is None:
            unsafe.append("trainer.epochs (the cosine schedule's length depends on it)")
    return unsafe


def _show(value: Any) -> str:
    return "unset" if value is None else repr(value) if isinstance(value, str) else str(value)


def require_resumable(saved: Config, now: Config, what: str, advice: str) -> None:
    """The one resume rule: `now` may continue the run trained with `saved` only if it differs
    as a resume may (`unsafe_changes`). `what` says which two configs were compared.

    Raises:
        ConfigError: naming each key that differs, with both values, and `advice`.
    """
    from ..errors import ConfigError

    unsafe = unsafe_changes(saved, now)
    if unsafe:
        raise ConfigError(f"{what}: {', '.join(unsafe)}; resuming would continue another run "
                          f"(only trainer.epochs may grow, and {', '.join(HOW_IT_IS_WATCHED)} change). {advice}")
