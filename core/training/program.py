"""A compiled program that trains the trials of one run for an epoch and evaluates them.

The epoch loop (`core.training.loop`) drives any `Program` the same way; what differs between
training one config and a vectorised group of trials is only how the program is compiled
(`single_program` here, `core.training.vectorised.group_program`). Everything a program returns
is on the host, one entry per trial, so the loop never touches device layouts.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .setup import Setup
from .state import Arrays, TrainState
from .steps import make_batch_fn, make_epoch_fn

HostMetrics = dict[str, np.ndarray]


class Program(NamedTuple):
    """`epoch(state, epoch, first_batch, stop) -> (state, per-trial batch metrics, batches done)`:
    trains from `first_batch` to the end of the epoch (or, per step, until `stop.requested`);
    `evaluate(state) -> per-trial {"<split>/<metric>": value}`; `host_states(state) -> per-trial
    TrainState` on the host, for checkpoints."""

    epoch: Callable[[Any, int, int, Any], tuple[Any, list[HostMetrics], int]]
    evaluate: Callable[[Any], list[dict[str, float]]]
    host_states: Callable[[Any], list[TrainState]]
    steps_per_epoch: int
    compile_seconds: float
    label: str  # how it trains, for summary.json: scan, step, vectorised, shared-program
    snapshot: Callable[[Any], list[np.ndarray]] | None = None  # per trial, what its model shows each epoch (`Model.snapshot`)


def evaluate_splits(eval_fn, params, model_state, splits) -> dict[str, Any]:
    """`{"<split>/<metric>": value}` for every evaluated split."""
    out = {}
    for name, (batches, mask) in splits.items():
        out |= {f"{name}/{k}": v for k, v in eval_fn(params, model_state, batches, mask).items()}
    return out


def in_order(evaluated: dict[str, Any], splits, names: tuple[str, ...]) -> dict[str, float]:
    """A jitted function returns dicts with sorted keys; metrics.csv lists them split by split,
    in the set-up's metric order (`val/loss`, `val/acc`)."""
    return {f"{s}/{m}": evaluated[f"{s}/{m}"] for s in splits for m in names}


def single_program(setup: Setup, state: TrainState, keys: dict[str, jax.Array], data: Arrays, splits: dict) -> Program:
    """One run's program: the whole epoch as one `lax.scan` (`loop: scan`) or one jitted step
    per batch (`loop: step`), compiled ahead of time so that compile seconds and per-epoch
    seconds are measured apart."""
    if setup.devices is not None:  # everything the program takes, replicated over the mesh
        state, keys, data, splits = setup.devices.put((state, keys, data, splits))
        order_fn = jax.jit(setup.order, out_shardings=setup.devices.replicated)
        index = lambda i: setup.devices.put(jnp.int32(i))  # noqa: E731
    else:
        order_fn, index = jax.jit(setup.order), jnp.int32
    t0 = time.perf_counter()
    order0 = order_fn(keys["order"], 0)
    if setup.loop == "scan":
        run = jax.jit(make_epoch_fn(setup.train_step), donate_argnums=0).lower(state, data, order0, keys["step"]).compile()
    else:
        run = jax.jit(make_batch_fn(setup.train_step), donate_argnums=0).lower(
            state, data, order0, index(0), keys["step"]).compile()
    # the splits are arguments rather than closed-over constants, which XLA would fold slowly
    evaluate = jax.jit(lambda params, model_state, splits: evaluate_splits(setup.eval_fn, params, model_state, splits))
    evaluate = evaluate.lower(state.params, state.model_state, splits).compile()
    compile_seconds = time.perf_counter() - t0

    def epoch(state, epoch, first, stop):
        order = order_fn(keys["order"], epoch)
        if setup.loop == "scan":
            state, metrics = run(state, data, order, keys["step"])
            return state, [jax.device_get(metrics)], setup.steps_per_epoch  # one host transfer per epoch
        per_batch, done = [], first
        while done < setup.steps_per_epoch:
            state, m = run(state, data, order, index(done), keys["step"])
            per_batch.append(m)
            done += 1
            if stop.requested:
                break
        per_batch = jax.device_get(per_batch)
        return state, [{k: np.stack([m[k] for m in per_batch]) for k in per_batch[0]}], done

    return Program(
        epoch=epoch,
        evaluate=lambda state: [in_order(jax.device_get(evaluate(state.params, state.model_state, splits)), splits,
                                         setup.eval_names)],
        host_states=lambda state: [jax.device_get(state)],
        steps_per_epoch=setup.steps_per_epoch,
        compile_seconds=compile_seconds,
        label=setup.loop,
        snapshot=snapshot_fn(setup),
    )


def snapshot_fn(setup: Setup) -> Callable[[Any], list[np.ndarray]] | None:
    """The model's snapshot of the state, on the host (one transfer per epoch), for a model with one."""
    if setup.model.snapshot is None:
        return None
    shoot = jax.jit(lambda state: setup.model.snapshot(state.params, state.model_state))
    return lambda state: [np.asarray(jax.device_get(shoot(state)))]
