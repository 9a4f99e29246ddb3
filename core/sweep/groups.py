"""Which trials of a sweep can train as one vectorised group, and groups cut to fit in memory.

Trials that differ only in values that live in the training state (learning rate, momentum,
weight decay, clipping norm, dropout rates, seed, initialisation) share one compiled program
(`core.training.vectorised`). Everything else is structure and separates groups.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from ..config import Config, OptimizerConfig, flatten
from ..config.changes import HOW_IT_IS_WATCHED
from ..config.models import MODEL_IN_STATE

# Config keys whose values are state, not program: trials differing only in these share a group.
# For some, what counts is whether they are on (momentum > 0, ...), which is structure. Each comes
# from where it is decided: the optimizer's injected hyperparameters, the model keys that live in
# its state, the run's name and seed, and how a run is watched (which a resume may change too).
STATE_KEYS = {
    "name": lambda v: None,
    "seed": lambda v: None,
    **{f"optimizer.{k}": structure for k, structure in OptimizerConfig.IN_STATE.items()},
    **{f"model.{k}": structure for k, structure in MODEL_IN_STATE.items()},
    **{k: (lambda v: None) for k in HOW_IT_IS_WATCHED},
}


def group_key(cfg: Config) -> str:
    """Configs with equal keys can be trained as one vectorised group."""
    flat = flatten(cfg.model_dump(mode="json"))
    for key, structure in STATE_KEYS.items():
        if key == "seed" and getattr(type(cfg.data), "program_depends_on_seed", False):
            continue  # the step closes over what the seed draws (a ranking's training interactions)
        if key in flat:
            flat[key] = structure(flat[key])
    return json.dumps(flat, sort_keys=True, default=str)


def trial_bytes(state_bytes: int, step_temp_bytes: int) -> int:
    """A rough upper bound on what one more trial in a group costs on the device: its state
    (params, optimizer state), gradients and updates, and what one training step needs besides
    (activations both ways, as XLA's memory analysis of the compiled step reports)."""
    return 4 * state_bytes + step_temp_bytes


def memory_budget() -> int:
    """Bytes a vectorised group may use: a quarter of the device's memory (or of the host's RAM)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    total = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total) // 4


def train_chunks(cfgs: Sequence[Config], run_dirs: Sequence[str | Path], stop_epoch: int | None = None,
                 on_event: Callable[[int, str, str], None] | None = None, budget: int | None = None,
                 plot: bool = False, data=None) -> list:
    """`train_group` in chunks small enough for the device's memory (`memory_budget`).
    `data`, if given, is the data set of every trial (it must not depend on the seed)."""
    import jax
    import jax.numpy as jnp

    from ..training.setup import build_setup, start_state, train_arrays
    from ..training.state import take
    from ..training.vectorised import load_group_data, train_group

    datasets = [data] * len(cfgs) if data is not None else load_group_data(cfgs)
    setup = build_setup(cfgs[0], datasets[0])
    state, keys = start_state(setup, jax.random.PRNGKey(0))
    state_bytes = sum(a.nbytes for a in jax.tree_util.tree_leaves(state))
    batch = take(train_arrays(datasets[0]), jnp.arange(setup.batch_size))
    analysis = jax.jit(setup.train_step).lower(state, batch, keys["step"]).compile().memory_analysis()
    temp = getattr(analysis, "temp_size_in_bytes", None) or 3 * batch.x.nbytes * 8
    per_trial = trial_bytes(state_bytes, temp)
    if any(d is not datasets[0] for d in datasets):
        per_trial += datasets[0].x_train.nbytes + datasets[0].x_val.nbytes
    size = max(1, (budget or memory_budget()) // per_trial)
    outcomes: list = []
    for start in range(0, len(cfgs), size):
        members = range(start, min(start + size, len(cfgs)))
        event = (lambda i, status, message, start=start: on_event(start + i, status, message)) if on_event else None
        outcomes += train_group([cfgs[i] for i in members], [run_dirs[i] for i in members], stop_epoch, event,
                                [datasets[i] for i in members], plot)
    return outcomes
