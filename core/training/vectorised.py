"""Many trials, one compiled program: the training step under `jax.vmap` over a trial axis, or
(for matmul-bound models on a CPU, see `choose_mode`) one trial's program run for each in turn.

Trials that differ only in values that live in the training state train together: the learning
rate, momentum, weight decay and clipping norm sit in the optimizer state
(`optax.inject_hyperparams`, see core.training.optimizers), dropout rates in the model state,
and the seed and initialisation only decide the initial state and the RNG keys. Which configs
may share a group is decided by `core.sweep.groups.group_key`.

A group goes through the same lifecycle and epoch loop as a single run
(`core.training.lifecycle`, `core.training.loop`), so each trial gets the run directory it would
get alone, and a vectorised trial gives the metrics of the same trial trained alone, to float32
rounding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config
from ..data import DATASETS, Dataset, load_dataset
from ..nn.params import count
from ..report.figures import RunFigures
from ..report.progress import make_reporter
from .lifecycle import TrialOutcome, run_trials
from .program import Program, evaluate_splits, in_order
from .setup import Setup, eval_splits, train_arrays
from .state import take
from .steps import make_epoch_fn
from .trial import Trial

__all__ = ["TrialOutcome", "choose_mode", "group_program", "load_group_data", "make_layout", "train_group"]


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


class Layout(NamedTuple):
    """Trials arranged (U, M): each row shares one data order (one seed), so a row's trials see
    the same batches and their matmuls fuse into one wide matmul; rows run one after another
    (`lax.map`), which measured faster on CPU than a batched matmul over all trials. Rows shorter
    than M are padded by repeating a trial whose copy is thrown away."""

    rows: list[list[int]]  # trial indices, U rows of M (with padding repeats)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])

    def first_slot(self) -> dict[int, tuple[int, int]]:
        """Where each trial's own (not padding) copy lives."""
        slots: dict[int, tuple[int, int]] = {}
        for u, row in enumerate(self.rows):
            for m, i in enumerate(row):
                slots.setdefault(i, (u, m))
        return slots


def make_layout(trials: Sequence[int], seeds: Sequence[Any]) -> Layout:
    by_seed: dict[Any, list[int]] = {}
    for i in trials:
        by_seed.setdefault(seeds[i], []).append(i)
    width = max(len(v) for v in by_seed.values())
    return Layout([row + [row[-1]] * (width - len(row)) for row in by_seed.values()])


# Measured on a 2-core CPU (full Fashion-MNIST, 16 trials, s/epoch per trial, one program each way):
# softmax regression (7,850 parameters) 0.047 vectorised (4 seeds x 4) against 0.085 alone;
# the MLP (203,530 parameters) 0.94 vectorised against 0.63 alone, because its time goes to
# matmuls, which vmap turns into batched matmuls that XLA's CPU backend runs slower than one
# trial's plain ones. Accelerators have room to spare for small models: vmap there.
VMAP_MAX_PARAMS_CPU = 50_000


def choose_mode(params: Any, backend: str) -> str:
    """"vmap" for accelerators and for small models on a CPU; "serial" for the rest."""
    return "vmap" if backend != "cpu" or count(params) <= VMAP_MAX_PARAMS_CPU else "serial"


def make_group_epoch_fn(train_step):
    """`epoch(state, data, order, keys, data_per_row)`: state and keys (U, M, ...), order
    (U, batches, batch); `data` is shared, or stacked (U, ...) when each row's seed made its
    own data set. Returns the new state and per-batch metrics (U, M, batches)."""

    def epoch(state, data, order, keys, data_per_row: bool):
        def body(state, idx):  # idx: (U, batch), one batch per row
            def row(args):
                st, i, k, d = args
                batch = take(d if data_per_row else data, i)
                return jax.vmap(lambda s, key: train_step(s, batch, jax.random.fold_in(key, s.step)))(st, k)

            return jax.lax.map(row, (state, idx, keys, data if data_per_row else jnp.zeros(len(idx))))

        state, metrics = jax.lax.scan(body, state, jnp.swapaxes(order, 0, 1))
        return state, jax.tree_util.tree_map(lambda m: jnp.moveaxis(m, 0, -1), metrics)

    return epoch


def group_program(setup: Setup, trials: list[Trial], datasets: list[Dataset], mode: str) -> tuple[Program, Any]:
    """The program and initial device state of `trials` trained as one group. "vmap": one
    vectorised program over a (U, M) layout; "serial": one trial's program, compiled once and
    run for each trial in turn."""
    shared = all(d is datasets[0] for d in datasets)
    # trials share a data order (and a data set) exactly when they share the order key
    seeds = [np.asarray(jax.random.key_data(t.keys["order"]) if jnp.issubdtype(t.keys["order"].dtype, jax.dtypes.prng_key)
                        else t.keys["order"]).tobytes() for t in trials]
    layout = make_layout(range(len(trials)), seeds if mode == "vmap" else list(range(len(trials))))
    per_row = [row[0] for row in layout.rows]
    if shared:
        data, splits = train_arrays(datasets[0]), eval_splits(datasets[0])
    else:
        data = _stack([train_arrays(datasets[i]) for i in per_row])
        splits = _stack([eval_splits(datasets[i]) for i in per_row])
    slots = layout.first_slot()
    trial_at = lambda tree, i: jax.tree_util.tree_map(lambda a: np.asarray(a[slots[i]]), tree)  # noqa: E731
    order_fn = jax.jit(jax.vmap(setup.order, in_axes=(0, None)))
    order_keys = jnp.stack([jnp.asarray(trials[i].keys["order"]) for i in per_row])
    evaluate_one = lambda p, s, sp: evaluate_splits(setup.eval_fn, p, s, sp)  # noqa: E731
    t0 = time.perf_counter()
    if mode == "vmap":
        grid = lambda trees: _stack([_stack([trees[i] for i in r]) for r in layout.rows])  # noqa: E731
        state = grid([t.state for t in trials])
        step_keys = grid([jnp.asarray(t.keys["step"]) for t in trials])
        run = jax.jit(make_group_epoch_fn(setup.train_step), donate_argnums=0, static_argnums=4).lower(
            state, data, order_fn(order_keys, 0), step_keys, not shared).compile()
        axis = None if shared else 0
        evaluate = jax.jit(jax.vmap(jax.vmap(evaluate_one, in_axes=(0, 0, None)), in_axes=(0, 0, axis)))
        evaluate = evaluate.lower(state.params, state.model_state, splits).compile()

        def epoch(state, epoch, first, stop):
            state, metrics = run(state, data, order_fn(order_keys, epoch), step_keys)
            metrics = jax.device_get(metrics)  # one host transfer per epoch for the group
            return state, [trial_at(metrics, i) for i in range(len(trials))], setup.steps_per_epoch

        def host_states(state):
            host = jax.device_get(state)
            return [trial_at(host, i) for i in range(len(trials))]

        def evaluate_all(state):
            host = jax.device_get(evaluate(state.params, state.model_state, splits))
            return [in_order(trial_at(host, i), splits, setup.eval_names) for i in range(len(trials))]

        return Program(epoch, evaluate_all,
                       host_states, setup.steps_per_epoch, time.perf_counter() - t0, "vectorised"), state

    # serial: the program of one trial alone (as `train` compiles it), compiled once, run for each trial
    state = [jax.device_put(t.state) for t in trials]
    row_of = (lambda tree, r: tree) if shared else (lambda tree, r: jax.tree_util.tree_map(lambda a: a[r], tree))  # noqa: E731
    run1 = jax.jit(make_epoch_fn(setup.train_step), donate_argnums=0).lower(
        state[0], row_of(data, 0), order_fn(order_keys, 0)[0], trials[0].keys["step"]).compile()
    eval1 = jax.jit(evaluate_one).lower(state[0].params, state[0].model_state, row_of(splits, 0)).compile()

    def epoch(states, epoch, first, stop):
        order = order_fn(order_keys, epoch)
        outs = [run1(st, row_of(data, r), order[r], trials[r].keys["step"]) for r, st in enumerate(states)]
        return [o[0] for o in outs], [jax.device_get(o[1]) for o in outs], setup.steps_per_epoch

    return Program(epoch, lambda states: [in_order(jax.device_get(eval1(st.params, st.model_state, row_of(splits, r))),
                                                   splits, setup.eval_names) for r, st in enumerate(states)],
                   lambda states: [jax.device_get(st) for st in states], setup.steps_per_epoch,
                   time.perf_counter() - t0, "shared-program"), state


def load_group_data(cfgs: Sequence[Config]) -> list[Dataset]:
    """One data set per trial, loaded once per seed, or once in all when the data set does not
    depend on the seed (`DataSource.seeded`)."""
    if not DATASETS[cfgs[0].data.name].seeded:
        return [load_dataset(cfgs[0].data, cfgs[0].seed)] * len(cfgs)
    by_seed = {seed: load_dataset(cfgs[0].data, seed) for seed in sorted({c.seed for c in cfgs})}
    return [by_seed[c.seed] for c in cfgs]


def train_group(
    cfgs: Sequence[Config],
    run_dirs: Sequence[str | Path],
    stop_epoch: int | None = None,
    on_event: Callable[[int, str, str], None] | None = None,
    datasets: Sequence[Dataset] | None = None,
    plot: bool = False,
    mode: str = "auto",
) -> list[TrialOutcome]:
    """Train configs that share a `core.sweep.groups.group_key` as one program; one outcome per trial.

    Each trial goes through the lifecycle of a run alone (`core.training.lifecycle`) and its run
    directory holds what the trial alone would hold; only the compiled program differs. Each
    trial resumes from the newest checkpoint in its run directory if there is one; all must then
    stand at the same epoch, at an epoch's end. A trial whose loss or gradient stops being finite
    is failed and dropped from the group (which is compiled again without it); the others go
    on. `on_event(index, status, message)` hears of each trial's end as it happens. With
    `plot`, each trial also gets its pictures. `mode`: "vmap", "serial" or "auto" (`choose_mode`).

    Raises:
        ValueError: checkpoints that stand at different epochs or inside an epoch, or states of
            different structures.
    """
    modes: list[str] = []

    def compile(setups: list[Setup], trials: list[Trial], data: list[Dataset]) -> tuple[Program, Any]:
        if any(t.position.batch for t in trials):
            raise ValueError("a trial stopped inside an epoch; resume it alone with dlrun train --resume")
        if len({t.position.epoch for t in trials}) != 1:
            raise ValueError(f"trials of one group stand at different epochs {sorted({t.position.epoch for t in trials})}")
        if len({jax.tree_util.tree_structure(t.state) for t in trials}) != 1:
            raise ValueError("trials of one group have different state structures")
        if not modes:  # decided once, from the first trial's parameters
            modes.append(choose_mode(trials[0].state.params, jax.default_backend()) if mode == "auto" else mode)
        # the program is built from the first trial's config; each trial's state from its own
        return group_program(setups[0], trials, data, modes[0])

    figures = RunFigures() if plot else None
    done = run_trials(cfgs, run_dirs, lambda: list(datasets) if datasets is not None else load_group_data(cfgs), compile,
                      resume=True, stop_epoch=stop_epoch, figures=figures, reporter=make_reporter("none", 0, ""),
                      regroup=True, on_event=on_event)
    return done.outcomes
