"""`train(cfg, run_dir)`: build everything from the config, train, write the run directory."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint, outputs
from .config import Config, ConfigError, flatten, load_config, to_yaml
from .data import Dataset, load_dataset
from .losses import CLASSIFICATION_LOSSES, LOSSES
from .models import build_model
from .optimizers import build_optimizer
from .progress import Reporter, make_reporter
from .steps import (
    Arrays,
    TrainState,
    epoch_order,
    init_state,
    make_batch_fn,
    make_epoch_fn,
    make_eval_fn,
    make_train_step,
    pad_for_eval,
)

EVAL_BATCH = 1024
# metrics.csv is rewritten (atomically) at most this often, and always when the run ends:
# rewriting it after each of 1500 one-millisecond epochs would cost more than the training
METRICS_WRITE_INTERVAL = 2.0


class TrainingDiverged(RuntimeError):
    """The loss or a gradient stopped being finite; the last good checkpoint and the epochs
    before it are on disk."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM: the current step finished, a checkpoint was written; resumable."""


class Result(NamedTuple):
    state: TrainState
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def choose_loop(cfg: Config, backend: str) -> str:
    """`trainer.loop: auto` -> `scan` or `step`, from `benchmarks/speed.py`'s measurements.

    Full Fashion-MNIST, 2-core CPU, jax 0.10.2, s/epoch scan vs step: softmax regression 0.148
    vs 0.221, MLP 0.558 vs 0.705; LeNet with the CPU convolution (core/conv.py) about 5 vs 10.
    XLA's own convolution is the exception: inside a scan's loop body XLA's CPU backend leaves
    it to a generic kernel (LeNet about 29 s/epoch against 9 per step), so it runs per step.
    On accelerators per-step dispatch costs relatively more, so scan is the default there.
    """
    if cfg.trainer.loop != "auto":
        return cfg.trainer.loop
    if backend == "cpu" and getattr(cfg.model, "conv_impl", None) == "xla":
        return "step"
    return "scan"


def train(
    cfg: Config,
    run_dir: str | Path,
    reporter: Reporter | None = None,
    data: Dataset | None = None,
    resume: bool = False,
    stop_epoch: int | None = None,
    plot: bool = True,
) -> Result:
    """Train as `cfg` says, writing config.yaml, metrics.csv (every few seconds), checkpoints
    (every `trainer.checkpoint_every` epochs), summary.json and curves.png into `run_dir`.

    With `resume`, continue from the newest checkpoint in `run_dir`; the result is the same,
    bit for bit, as a run that was never stopped. With `stop_epoch`, stop after that epoch with
    a checkpoint (successive halving trains a trial rung by rung this way). Without `plot`,
    no curves.png (a sweep draws all its trials in one picture instead).

    Raises:
        TrainingDiverged: a non-finite loss or gradient.
        TrainingInterrupted: SIGINT or SIGTERM; a checkpoint was written first.
        ValueError: a batch larger than the training set.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with outputs.RunLock(run_dir):
        return _train_locked(cfg, run_dir, reporter, data, resume, stop_epoch, plot)


def _train_locked(cfg, run_dir: Path, reporter, data, resume: bool, stop_epoch: int | None, plot: bool) -> Result:
    t_start = time.perf_counter()
    outputs.write_atomic(run_dir / "config.yaml", to_yaml(cfg))  # first: a killed run stays resumable
    data = data if data is not None else load_dataset(cfg.data, cfg.seed)
    classify = cfg.loss.name in CLASSIFICATION_LOSSES
    loss_fn = LOSSES[cfg.loss.name]
    batch_size = cfg.data.batch_size
    n_train = len(data.x_train)
    if batch_size > n_train:
        raise ValueError(f"data.batch_size ({batch_size}) is larger than the training set ({n_train} examples)")
    steps_per_epoch = n_train // batch_size

    model = build_model(cfg.model, data.input_shape, data.output_dim)
    optimizer = build_optimizer(cfg.optimizer, steps_per_epoch, cfg.trainer.epochs)
    init_key, order_key, step_key = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    state = init_state(model, optimizer, init_key)
    position, rows, partial = checkpoint.Position(0, 0), [], []
    if resume and checkpoint.list_checkpoints(run_dir / "checkpoints"):  # none yet: start over
        ckpt = checkpoint.load_latest(run_dir / "checkpoints", state)
        state = jax.device_put(ckpt.state)
        order_key, step_key = jnp.asarray(ckpt.keys["order"]), jnp.asarray(ckpt.keys["step"])
        position, rows, partial = ckpt.position, ckpt.rows, ckpt.partial
    keys = {"order": order_key, "step": step_key}
    train_data = Arrays(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    val_batches, val_mask = pad_for_eval(
        Arrays(jnp.asarray(data.x_val), jnp.asarray(data.y_val)), min(EVAL_BATCH, len(data.x_val))
    )

    # Compile ahead of time so that compile seconds and per-epoch seconds are measured apart.
    loop = choose_loop(cfg, jax.default_backend())
    train_step = make_train_step(model, loss_fn, optimizer, classify, cfg.loss.l2_penalty)
    order_fn = jax.jit(epoch_order, static_argnums=(2, 3))
    t0 = time.perf_counter()
    order = order_fn(order_key, 0, n_train, batch_size)
    if loop == "scan":
        run_fn = jax.jit(make_epoch_fn(train_step), donate_argnums=0).lower(state, train_data, order, step_key).compile()
    else:
        run_fn = jax.jit(make_batch_fn(train_step), donate_argnums=0).lower(
            state, train_data, order, jnp.int32(0), step_key
        ).compile()
    eval_fn = jax.jit(make_eval_fn(model, loss_fn, classify)).lower(state.params, state.model_state, val_batches, val_mask).compile()
    compile_seconds = time.perf_counter() - t0

    def save_checkpoint(state, position, partial=()):
        checkpoint.save(run_dir / "checkpoints", state, keys, position, rows, list(partial), to_yaml(cfg), cfg.trainer.keep_checkpoints)

    reporter = reporter or make_reporter(cfg.trainer.progress, cfg.trainer.epochs, cfg.name)
    last_write = -math.inf
    last_epoch = min(stop_epoch or cfg.trainer.epochs, cfg.trainer.epochs)
    stop = _StopFlag()
    try:
        with stop.installed():
            for epoch in range(position.epoch + 1, last_epoch + 1):
                t_epoch = time.perf_counter()
                order = order_fn(order_key, epoch, n_train, batch_size)
                if loop == "scan":
                    state, batch_metrics = run_fn(state, train_data, order, step_key)
                    batch_metrics = jax.device_get(batch_metrics)  # one host transfer per epoch
                else:
                    first = position.batch if epoch == position.epoch + 1 else 0
                    per_batch = [{k: np.float32(v) for k, v in m.items()} for m in partial] if first else []
                    for i in range(first, steps_per_epoch):
                        state, m = run_fn(state, train_data, order, jnp.int32(i), step_key)
                        per_batch.append(m)
                        if stop.requested and i + 1 < steps_per_epoch:
                            done = jax.device_get(per_batch)
                            _check_finite(done, epoch, steps_per_epoch, rows, run_dir, first=first)
                            save_checkpoint(state, checkpoint.Position(epoch - 1, i + 1), [{k: float(v) for k, v in d.items()} for d in done])
                            raise TrainingInterrupted(f"stopped in epoch {epoch} after batch {i + 1}")
                    per_batch = jax.device_get(per_batch)
                    batch_metrics = {k: np.stack([m[k] for m in per_batch]) for k in per_batch[0]}
                _check_finite(batch_metrics, epoch, steps_per_epoch, rows, run_dir)
                seconds = time.perf_counter() - t_epoch
                val_metrics = jax.device_get(eval_fn(state.params, state.model_state, val_batches, val_mask))
                row = epoch_row(epoch, batch_metrics, val_metrics, seconds)
                rows.append(row)
                every = cfg.trainer.checkpoint_every
                if (every and epoch % every == 0) or epoch == last_epoch or stop.requested:
                    save_checkpoint(state, checkpoint.Position(epoch, 0))
                if time.perf_counter() - last_write > METRICS_WRITE_INTERVAL:
                    outputs.write_metrics(run_dir / "metrics.csv", rows)
                    last_write = time.perf_counter()
                reporter.epoch(row)
                if stop.requested and epoch < cfg.trainer.epochs:
                    raise TrainingInterrupted(f"stopped after epoch {epoch}")
    finally:
        reporter.close()
        if rows:
            outputs.write_metrics(run_dir / "metrics.csv", rows)
            if plot:
                outputs.plot_curves(run_dir / "curves.png", rows, title=cfg.name)

    summary = make_summary(rows, state.params, data, wall_seconds=time.perf_counter() - t_start,
                           compile_seconds=compile_seconds, loop=loop)
    outputs.write_json(run_dir / "summary.json", summary)
    return Result(state, rows, summary)


def epoch_row(epoch: int, batch_metrics, val_metrics, seconds: float) -> dict[str, Any]:
    """One line of metrics.csv: train metrics averaged over the epoch's batches, val metrics."""
    row: dict[str, Any] = {"epoch": epoch}
    for split, values in (("train", batch_metrics), ("val", val_metrics)):
        row |= {f"{split}/{k}": float(np.mean(values[k])) for k in ("loss", "acc") if k in values}
    row["seconds"] = seconds
    return row


def make_summary(rows, params, data: Dataset, **extra) -> dict[str, Any]:
    """summary.json: the last epoch's metrics, timings, where it ran, and the parameter report."""
    summary = {k: v for k, v in rows[-1].items() if "/" in k}
    summary |= {
        "epochs": len(rows),
        "train_seconds": sum(r["seconds"] for r in rows),
        "seconds_per_epoch": float(np.median([r["seconds"] for r in rows])),
    }
    summary |= extra
    summary |= {
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
    }
    return summary | parameter_report(params, data)


def _check_finite(batch_metrics, epoch: int, steps_per_epoch: int, rows, run_dir: Path, first: int = 0) -> None:
    """Stop at the first step whose loss or gradient norm is not finite, saying where and what to try."""
    if isinstance(batch_metrics, list):
        batch_metrics = {k: np.asarray([m[k] for m in batch_metrics]) for k in batch_metrics[0]} if batch_metrics else {}
    finite = np.asarray(batch_metrics.get("finite", np.ones(0, bool)), bool)
    if finite.all():
        return
    bad = int(np.argmin(finite))
    step = (epoch - 1) * steps_per_epoch + (first if first else 0) + bad + 1
    kept = f"epochs 1-{len(rows)} and the last checkpoint are kept in {run_dir}" if rows else f"nothing was trained yet in {run_dir}"
    raise TrainingDiverged(
        f"the loss or a gradient became non-finite at step {step} (epoch {epoch}, batch {bad + 1}); {kept}. "
        "Try a lower optimizer.lr or gradient clipping (optimizer.clip_norm=1.0)."
    )


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT stops at once."""

    def __init__(self):
        self.requested = False

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def resume_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config to resume `run_dir` with: its saved config plus `overrides`, which may only
    raise trainer.epochs (or change how progress is shown).

    Raises:
        ConfigError: the run directory has no config, or an override changes what was trained.
    """
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    saved = load_config(saved_path)
    cfg = load_config(saved_path, overrides)
    before, after = flatten(saved.model_dump(mode="json")), flatten(cfg.model_dump(mode="json"))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    unsafe = [k for k in changed if k not in ("trainer.epochs", "trainer.progress")]
    if "trainer.epochs" in changed:
        if cfg.trainer.epochs < saved.trainer.epochs:
            unsafe.append("trainer.epochs (fewer than before)")
        if cfg.optimizer.schedule.name == "cosine":
            unsafe.append("trainer.epochs (the cosine schedule's length depends on it)")
    if unsafe:
        raise ConfigError(
            f"{saved_path}: resuming with a changed config is refused for: {', '.join(unsafe)}; "
            "only trainer.epochs may grow. Start a new run instead."
        )
    return cfg


def parameter_report(params, data: Dataset) -> dict[str, Any]:
    """||w|| over all weight matrices (D2L 4.5); for data made from known weights (D2L 3.2.4),
    how far the learned ones are from them."""
    weights = [np.asarray(p["w"]) for p in params.values() if isinstance(p, dict) and "w" in p]
    report = {"w_norm": float(np.sqrt(sum(np.sum(w.astype(np.float64) ** 2) for w in weights)))}
    if "true_w" not in data.meta or "dense0" not in params or len(params) != 1:
        return report
    w = np.asarray(params["dense0"]["w"]).reshape(-1)
    b = float(np.asarray(params["dense0"].get("b", np.zeros(1))).reshape(-1)[0])
    true_w = np.asarray(data.meta["true_w"])
    report |= {"w_error": float(np.max(np.abs(w - true_w))), "b_error": abs(b - data.meta["true_b"])}
    if w.size <= 32:
        report |= {"learned_w": w.tolist(), "learned_b": b}
    return report
