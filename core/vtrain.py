"""Many trials, one compiled program: the training step under `jax.vmap` over a trial axis, or
(for matmul-bound models on a CPU, see `choose_mode`) one trial's program run for each in turn.

Trials that differ only in values that live in the training state train together: the learning
rate, momentum, weight decay and clipping norm sit in the optimizer state
(`optax.inject_hyperparams`, see core.optimizers), dropout rates in the model state, and the
seed and initialisation only decide the initial state and the RNG keys. Everything else
(shapes, the model, the data, the loss, the schedule, whether momentum or dropout is on at all)
is structure, and trials that differ in it form separate groups (`group_key`).

Each trial still gets a normal run directory (config.yaml, metrics.csv, checkpoints/,
summary.json, curves.png) written by the same functions as `core.train`, and a vectorised trial
gives the metrics of the same trial trained alone, to float32 rounding.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint, outputs
from .config import Config, flatten, to_yaml
from .data import Dataset, load_dataset
from .losses import CLASSIFICATION_LOSSES, LOSSES
from .models import build_model
from .optimizers import build_optimizer
from .steps import Arrays, epoch_order, init_state, make_epoch_fn, make_eval_fn, make_train_step, pad_for_eval, take
from .train import EVAL_BATCH, epoch_row, make_summary

# Config keys whose values are state, not program: trials differing only in these share a group.
# For the others, what counts is whether they are on (momentum > 0, ...), which is structure.
STATE_KEYS = {
    "name": lambda v: None,
    "seed": lambda v: None,
    "optimizer.lr": lambda v: None,
    "optimizer.momentum": lambda v: v > 0,
    "optimizer.weight_decay": lambda v: v > 0,
    "optimizer.clip_norm": lambda v: v is None,
    "model.dropout": lambda v: [r > 0 for r in v] if isinstance(v, list) else v > 0,
    "model.init": lambda v: None,
    "model.init_scale": lambda v: None,
    "trainer.progress": lambda v: None,
}
# Data sets that do not depend on the seed are loaded once and shared by the whole group.
SEEDLESS_DATA = frozenset({"fashion_mnist"})


class TrialOutcome(NamedTuple):
    status: str  # "done", "stopped" (at stop_epoch, resumable) or "failed"
    summary: dict[str, Any] | None
    error: str | None


def group_key(cfg: Config) -> str:
    """Configs with equal keys can be trained as one vectorised group."""
    flat = flatten(cfg.model_dump(mode="json"))
    for key, structure in STATE_KEYS.items():
        if key in flat:
            flat[key] = structure(flat[key])
    return json.dumps(flat, sort_keys=True, default=str)


def trial_bytes(cfg: Config, input_size: int, state_bytes: int) -> int:
    """A rough upper bound on what one more trial in a group costs on the device: its state
    (params, optimizer state), gradients and updates, and one batch of activations both ways."""
    widths = input_size + sum(getattr(cfg.model, "hidden", ())) + 16
    return 4 * state_bytes + 3 * 4 * cfg.data.batch_size * widths


def memory_budget() -> int:
    """Bytes a vectorised group may use: a quarter of the device's memory (or of the host's RAM)."""
    stats = jax.devices()[0].memory_stats() or {}
    total = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total) // 4


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _concat(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *trees)


def _slice(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _load_data(cfgs: Sequence[Config]) -> tuple[list[Dataset], bool]:
    """One data set per trial, and whether they are all the same one (then shared, not stacked)."""
    if cfgs[0].data.name in SEEDLESS_DATA:
        data = load_dataset(cfgs[0].data, cfgs[0].seed)
        return [data] * len(cfgs), True
    by_seed = {seed: load_dataset(cfgs[0].data, seed) for seed in sorted({c.seed for c in cfgs})}
    return [by_seed[c.seed] for c in cfgs], len(by_seed) == 1


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


# Measured on a 2-core CPU (full Fashion-MNIST, 16 trials, s/epoch per trial, one program each way):
# softmax regression (7,850 parameters) 0.047 vectorised (4 seeds x 4) against 0.085 alone;
# the MLP (203,530 parameters) 0.94 vectorised against 0.63 alone, because its time goes to
# matmuls, which vmap turns into batched matmuls that XLA's CPU backend runs slower than one
# trial's plain ones. Accelerators have room to spare for small models: vmap there.
VMAP_MAX_PARAMS_CPU = 50_000


def choose_mode(params: Any, backend: str) -> str:
    """"vmap" for accelerators and for small models on a CPU; "serial" for the rest."""
    count = sum(int(np.size(p)) for p in jax.tree_util.tree_leaves(params))
    return "vmap" if backend != "cpu" or count <= VMAP_MAX_PARAMS_CPU else "serial"


def make_layout(trials: Sequence[int], seeds: Sequence[int]) -> Layout:
    by_seed: dict[int, list[int]] = {}
    for i in trials:
        by_seed.setdefault(seeds[i], []).append(i)
    width = max(len(v) for v in by_seed.values())
    return Layout([row + [row[-1]] * (width - len(row)) for row in by_seed.values()])


def make_group_epoch_fn(train_step):
    """`epoch(state, data, order, keys)`: state and keys (U, M, ...), order (U, batches, batch);
    `data` is shared, or stacked (U, ...) when each row's seed made its own data set.
    Returns the new state and per-batch metrics (U, M, batches)."""

    def epoch(state, data, order, keys, data_per_row: bool):
        def body(state, idx):  # idx: (U, batch), one batch per row
            def row(args):
                st, i, k, d = args
                batch = take(d if data_per_row else data, i)
                step = lambda s, key: train_step(s, batch.x, batch.y, jax.random.fold_in(key, s.step))  # noqa: E731
                return jax.vmap(step)(st, k)

            return jax.lax.map(row, (state, idx, keys, data if data_per_row else jnp.zeros(len(idx))))

        state, metrics = jax.lax.scan(body, state, jnp.swapaxes(order, 0, 1))
        return state, jax.tree_util.tree_map(lambda m: jnp.moveaxis(m, 0, -1), metrics)

    return epoch


def train_group(
    cfgs: Sequence[Config],
    run_dirs: Sequence[str | Path],
    stop_epoch: int | None = None,
    on_event: Callable[[int, str, str], None] | None = None,
    datasets: Sequence[Dataset] | None = None,
    plot: bool = False,
    mode: str = "auto",
) -> list[TrialOutcome]:
    """Train configs that share a `group_key` as one vectorised program; one outcome per trial.

    Each trial resumes from the newest checkpoint in its run directory if there is one; all
    must then stand at the same epoch. A trial whose loss or gradient stops being finite is
    failed and dropped from the group (which is compiled again without it); the others go on.
    `on_event(index, status, message)` hears of each trial's end as it happens. With `plot`,
    each trial also gets its curves.png. `mode`: "vmap" trains the trials as one vectorised
    program; "serial" compiles one trial's program once and runs it for each trial in turn (no
    compile per trial; faster than vmap for matmul-bound models on a CPU); "auto" chooses
    (`choose_mode`).

    Raises:
        ValueError: the configs do not share a group, or their checkpoints stand at different epochs.
    """
    t_start = time.perf_counter()
    if len({group_key(c) for c in cfgs}) != 1:
        raise ValueError("train_group needs configs that differ only in state values (see vtrain.STATE_KEYS)")
    cfg0 = cfgs[0]
    run_dirs = [Path(d) for d in run_dirs]
    for cfg, run_dir in zip(cfgs, run_dirs):
        run_dir.mkdir(parents=True, exist_ok=True)
        outputs.write_atomic(run_dir / "config.yaml", to_yaml(cfg))
    if datasets is None:
        datasets, _ = _load_data(cfgs)
    data0 = datasets[0]
    shared = all(d is data0 for d in datasets)
    n_train, batch_size = len(data0.x_train), cfg0.data.batch_size
    if batch_size > n_train:
        raise ValueError(f"data.batch_size ({batch_size}) is larger than the training set ({n_train} examples)")
    steps_per_epoch = n_train // batch_size
    classify = cfg0.loss.name in CLASSIFICATION_LOSSES
    loss_fn = LOSSES[cfg0.loss.name]

    # Each trial's initial state from its own config (its seed, init, hyperparameter values),
    # or from its checkpoint; the program is built from the first trial's config.
    states, keys, all_rows, positions = [], [], [], []
    for cfg, run_dir, data in zip(cfgs, run_dirs, datasets):
        model = build_model(cfg.model, data.input_shape, data.output_dim)
        optimizer = build_optimizer(cfg.optimizer, steps_per_epoch, cfg.trainer.epochs)
        init_key, order_key, step_key = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
        state, rows, epoch = init_state(model, optimizer, init_key), [], 0
        if checkpoint.list_checkpoints(run_dir / "checkpoints"):
            ckpt = checkpoint.load_latest(run_dir / "checkpoints", state)
            if ckpt.position.batch:
                raise ValueError(f"{run_dir}: stopped inside an epoch; resume it alone with dlrun train --resume")
            state, rows, epoch = ckpt.state, ckpt.rows, ckpt.position.epoch
            order_key, step_key = jnp.asarray(ckpt.keys["order"]), jnp.asarray(ckpt.keys["step"])
        states.append(state)
        keys.append({"order": order_key, "step": step_key})
        all_rows.append(list(rows))
        positions.append(epoch)
    if len(set(positions)) != 1:
        raise ValueError(f"trials of one group stand at different epochs {sorted(set(positions))}; group them by epoch")
    if len({jax.tree_util.tree_structure(s) for s in states}) != 1:
        raise ValueError("trials of one group have different state structures")
    # trials share a data order (and a data set) exactly when they share the order key
    seeds = [hash(np.asarray(jax.random.key_data(k["order"]) if jnp.issubdtype(k["order"].dtype, jax.dtypes.prng_key) else k["order"]).tobytes()) for k in keys]

    model = build_model(cfg0.model, data0.input_shape, data0.output_dim)
    optimizer = build_optimizer(cfg0.optimizer, steps_per_epoch, cfg0.trainer.epochs)
    train_step = make_train_step(model, loss_fn, optimizer, classify, cfg0.loss.l2_penalty)
    eval_size = min(EVAL_BATCH, len(data0.x_val))
    order_fn = jax.jit(jax.vmap(epoch_order, in_axes=(0, None, None, None)), static_argnums=(2, 3))
    group_epoch = make_group_epoch_fn(train_step)
    eval_one = make_eval_fn(model, loss_fn, classify)

    if mode == "auto":
        mode = choose_mode(states[0].params, jax.default_backend())

    def build(active: list[int]):
        """Stack the active trials' state into a layout and compile the group's epoch for it."""
        layout = make_layout(active, seeds if mode == "vmap" else list(range(len(cfgs))))
        per_row = [layout_row[0] for layout_row in layout.rows]
        grid = lambda trees: _stack([_stack([trees[i] for i in r]) for r in layout.rows])  # noqa: E731
        state = grid(states)
        step_keys = grid([k["step"] for k in keys])
        order_keys = jnp.stack([keys[i]["order"] for i in per_row])
        if shared:
            train_data = Arrays(jnp.asarray(data0.x_train), jnp.asarray(data0.y_train))
            val_batches, val_mask = pad_for_eval(Arrays(jnp.asarray(data0.x_val), jnp.asarray(data0.y_val)), eval_size)
        else:
            train_data = _stack([Arrays(jnp.asarray(datasets[i].x_train), jnp.asarray(datasets[i].y_train)) for i in per_row])
            val_batches, val_mask = _stack([pad_for_eval(Arrays(jnp.asarray(datasets[i].x_val), jnp.asarray(datasets[i].y_val)), eval_size) for i in per_row])
        data_axis = None if shared else 0
        evaluate = jax.vmap(jax.vmap(eval_one, in_axes=(0, 0, None, None)), in_axes=(0, 0, data_axis, data_axis))
        t0 = time.perf_counter()
        order = order_fn(order_keys, 0, n_train, batch_size)
        if mode == "vmap":
            run = jax.jit(group_epoch, donate_argnums=0, static_argnums=4).lower(state, train_data, order, step_keys, not shared).compile()
            eval_all = jax.jit(evaluate).lower(state.params, state.model_state, val_batches, val_mask).compile()
            evaluate = lambda state: eval_all(state.params, state.model_state, val_batches, val_mask)  # noqa: E731
            host = jax.device_get
        else:  # the program of one trial alone (as core.train compiles it), compiled once, run for each trial
            state = [states[r[0]] for r in layout.rows]
            per_trial = (lambda tree, r: tree) if shared else (lambda tree, r: jax.tree_util.tree_map(lambda a: a[r], tree))  # noqa: E731
            run1 = jax.jit(make_epoch_fn(train_step), donate_argnums=0).lower(
                state[0], per_trial(train_data, 0), order[0], step_keys[0, 0]).compile()
            eval1 = jax.jit(eval_one).lower(state[0].params, state[0].model_state, *per_trial((val_batches, val_mask), 0)).compile()
            as_grid = lambda trees: jax.tree_util.tree_map(lambda *xs: jnp.stack(xs)[:, None], *trees)  # noqa: E731

            def run(state, train_data, order, step_keys):
                outs = [run1(st, per_trial(train_data, r), order[r], step_keys[r, 0]) for r, st in enumerate(state)]
                return [o[0] for o in outs], as_grid([o[1] for o in outs])

            def evaluate(state):
                return as_grid([eval1(st.params, st.model_state, *per_trial((val_batches, val_mask), r)) for r, st in enumerate(state)])

            def host(state):
                return jax.tree_util.tree_map(lambda *xs: np.stack(xs)[:, None], *jax.device_get(state))

        return dict(layout=layout, state=state, step_keys=step_keys, order_keys=order_keys, train_data=train_data,
                    run=run, evaluate=evaluate, host=host, compile_seconds=time.perf_counter() - t0)

    active = list(range(len(cfgs)))
    g = build(active)
    compile_seconds = g["compile_seconds"]
    outcomes: dict[int, TrialOutcome] = {}
    last_epoch = min(stop_epoch or cfg0.trainer.epochs, cfg0.trainer.epochs)
    last_write = -np.inf
    for epoch in range(positions[0] + 1, last_epoch + 1):
        t_epoch = time.perf_counter()
        order = order_fn(g["order_keys"], epoch, n_train, batch_size)
        g["state"], batch_metrics = g["run"](g["state"], g["train_data"], order, g["step_keys"])
        batch_metrics = jax.device_get(batch_metrics)  # one host transfer per epoch for the group
        seconds = time.perf_counter() - t_epoch
        val_metrics = jax.device_get(g["evaluate"](g["state"]))
        every = cfg0.trainer.checkpoint_every
        save = (every and epoch % every == 0) or epoch == last_epoch
        write = time.perf_counter() - last_write > 2.0
        failed = []
        host_state = g["host"](g["state"]) if save or epoch == last_epoch else None
        host_keys = np.asarray(g["step_keys"])
        for i, (u, m) in g["layout"].first_slot().items():
            ours = lambda tree: jax.tree_util.tree_map(lambda a: a[u, m], tree)  # noqa: E731
            finite = np.asarray(batch_metrics["finite"][u, m], bool)
            if not finite.all():
                step = (epoch - 1) * steps_per_epoch + int(np.argmin(finite)) + 1
                message = (f"the loss or a gradient became non-finite at step {step} (epoch {epoch}); "
                           "try a lower optimizer.lr or optimizer.clip_norm")
                failed.append(i)
                outcomes[i] = TrialOutcome("failed", None, message)
                _finish_files(run_dirs[i], all_rows[i], cfgs[i].name, plot)
                if on_event:
                    on_event(i, "failed", message)
                continue
            all_rows[i].append(epoch_row(epoch, ours(batch_metrics), ours(val_metrics), seconds))
            if host_state is not None:
                states[i] = ours(host_state)
                keys[i] = {"order": keys[i]["order"], "step": host_keys[u, m]}
            if save:
                checkpoint.save(run_dirs[i] / "checkpoints", states[i], keys[i], checkpoint.Position(epoch, 0),
                                all_rows[i], [], to_yaml(cfgs[i]), cfgs[i].trainer.keep_checkpoints)
            if write:
                outputs.write_metrics(run_dirs[i] / "metrics.csv", all_rows[i])
        if write:
            last_write = time.perf_counter()
        if failed:  # shrink the group: the failed trials stop costing compute
            active = [i for i in active if i not in failed]
            if not active:
                break
            if host_state is None:  # the survivors' current state, to rebuild the group from
                host_state = g["host"](g["state"])
                for i, (u, m) in g["layout"].first_slot().items():
                    states[i] = jax.tree_util.tree_map(lambda a: a[u, m], host_state)
                    keys[i] = {"order": keys[i]["order"], "step": host_keys[u, m]}
            g = build(active)
            compile_seconds += g["compile_seconds"]

    wall = time.perf_counter() - t_start
    for i in active:
        _finish_files(run_dirs[i], all_rows[i], cfgs[i].name, plot)
        summary = make_summary(all_rows[i], states[i].params, datasets[i], wall_seconds=wall,
                               compile_seconds=compile_seconds, loop="vectorised" if mode == "vmap" else "shared-program", group_size=len(cfgs),
                               layout=list(g["layout"].shape))
        outputs.write_json(run_dirs[i] / "summary.json", summary)
        status = "done" if len(all_rows[i]) >= cfgs[i].trainer.epochs else "stopped"
        outcomes[i] = TrialOutcome(status, summary, None)
        if on_event:
            on_event(i, status, "")
    return [outcomes[i] for i in range(len(cfgs))]


def train_chunks(
    cfgs: Sequence[Config],
    run_dirs: Sequence[str | Path],
    stop_epoch: int | None = None,
    on_event: Callable[[int, str, str], None] | None = None,
    budget: int | None = None,
    plot: bool = False,
    data: Dataset | None = None,
) -> list[TrialOutcome]:
    """`train_group` in chunks small enough for the device's memory (`memory_budget`).
    `data`, if given, is the data set of every trial (it must not depend on the seed)."""
    datasets, shared = ([data] * len(cfgs), True) if data is not None else _load_data(cfgs)
    cfg0, data0 = cfgs[0], datasets[0]
    model = build_model(cfg0.model, data0.input_shape, data0.output_dim)
    optimizer = build_optimizer(cfg0.optimizer, 1, cfg0.trainer.epochs)
    shapes = jax.eval_shape(lambda k: init_state(model, optimizer, k), jax.random.PRNGKey(0))
    state_bytes = sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(shapes))
    per_trial = trial_bytes(cfg0, math.prod(data0.input_shape), state_bytes)
    if not shared:
        per_trial += data0.x_train.nbytes + data0.x_val.nbytes
    size = max(1, (budget or memory_budget()) // per_trial)
    outcomes: list[TrialOutcome] = []
    for start in range(0, len(cfgs), size):
        members = range(start, min(start + size, len(cfgs)))
        event = (lambda i, status, message, start=start: on_event(start + i, status, message)) if on_event else None
        outcomes += train_group([cfgs[i] for i in members], [run_dirs[i] for i in members], stop_epoch, event,
                                [datasets[i] for i in members], plot)
    return outcomes


def _device_data(datasets: Sequence[Dataset], shared: bool) -> Arrays:
    if shared:
        d = datasets[0]
        return Arrays(jnp.asarray(d.x_train), jnp.asarray(d.y_train))
    return Arrays(jnp.stack([jnp.asarray(d.x_train) for d in datasets]), jnp.stack([jnp.asarray(d.y_train) for d in datasets]))


def _finish_files(run_dir: Path, rows, title: str, plot: bool) -> None:
    if rows:
        outputs.write_metrics(run_dir / "metrics.csv", rows)
        if plot:
            outputs.plot_curves(run_dir / "curves.png", rows, title=title)
