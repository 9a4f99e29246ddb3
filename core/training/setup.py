"""Everything a run needs before its first epoch, built from a config in one place.

`build_setup` turns a config and a data set into the model, the optimizer, the loss, the
step and evaluation functions and the batch geometry; `start_state` gives the initial state and
the RNG keys of a run from its root key. `dlrun train`, each trial of a sweep (alone or in a
vectorised group), every experiment module and the speed benchmark build their runs here.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, metrics
from ..config.data import batch_too_large
from ..data import Dataset
from ..data.dataset import num_examples
from ..data.pipeline import build_pipeline
from ..data.sampling import epoch_order, steps_per_epoch
from ..errors import ConfigError
from ..nn.losses import LOSSES, Loss, Metric, default_metrics
from ..nn.models import Model, build_model, with_input, with_targets
from ..nn.params import path_name
from ..nn.recsys import with_negatives
from ..nn.summary import Row, parameter_rows, summarize
from .devices import Devices, resolve
from .optimizers import build_optimizer, unmatched_groups
from .parts import PartsOptimizer, make_parts_step
from .state import Arrays, TrainState, init_state
from .steps import make_eval_fn, make_train_step, pad_for_eval

EVAL_BATCH = 1024


class Setup(NamedTuple):
    cfg: Config
    model: Model
    optimizer: Any  # optax.GradientTransformation
    loss: Loss
    train_step: Callable  # (state, batch, key) -> (state, metrics)
    order: Callable  # (key, epoch) -> the epoch's (steps_per_epoch, batch_size) example indices
    eval_fn: Callable  # (params, model_state, batches, mask) -> metrics
    eval_names: tuple[str, ...]  # the metrics eval_fn reports, in the order metrics.csv shows them
    batch_size: int
    num_train: int
    steps_per_epoch: int
    loop: str  # "scan" or "step"
    devices: Devices | None = None  # data parallel over a mesh (`core.training.devices`); None: one device


def choose_loop(requested: str, model: Model, backend: str) -> str:
    """`trainer.loop: auto` -> `scan` (the whole epoch as one program) unless per-step dispatch
    measured faster for the model on this backend (`Model.step_on`).

    Full Fashion-MNIST, 2-core CPU, jax 0.10.2, s/epoch scan vs step: softmax regression 0.148
    vs 0.221, MLP 0.558 vs 0.705; LeNet with the CPU convolution (core/nn/conv.py) about 5 vs 10.
    """
    if requested != "auto":
        return requested
    return "step" if backend in model.step_on else "scan"


def model_for(cfg: Config, data: Dataset) -> Model:
    """The model `cfg` describes, taking `data`'s examples through the config's input pipeline
    (resize, augmentation: `core.data.pipeline`)."""
    pipeline = build_pipeline(cfg.data, data.input_shape)
    carry_batch = cfg.data.batch_size if data.sampling.carries_state else None
    model = build_model(cfg.model, data.spec(pipeline.out_shape, carry_batch))
    if data.negatives is not None:  # a ranking's training pairs get a sampled negative item each (D2L 16.5)
        return with_negatives(model, data.negatives)
    if pipeline.identity:
        return model
    if moving_targets(data):  # boxes and masks are flipped, cropped and resized with their images
        return with_targets(model, pipeline.apply_pair, data.input_shape)
    return with_input(model, pipeline.apply, data.input_shape)


def moving_targets(data: Dataset) -> bool:
    """Whether the targets are named and some move with the image (`boxes`, `mask`)."""
    return isinstance(data.y_train, dict) and bool({"boxes", "mask"} & set(data.y_train))


def countable(cfg: Config) -> Config:
    """`cfg` with XLA's own convolution, whose FLOPs XLA's cost analysis counts (oneDNN's calls
    are opaque to it); the same function, so the same parameters and shapes."""
    if getattr(cfg.model, "conv_impl", "xla") == "xla":
        return cfg
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"conv_impl": "xla"})})


def network_summary(cfg: Config, data: Dataset, max_depth: int | None = None) -> tuple[list[Row], tuple[int, ...]]:
    """The rows of `core.nn.summary.summarize` for the network `cfg` builds, and the shape of
    one example as the network receives it (after the input pipeline's resize)."""
    pipeline = build_pipeline(cfg.data, data.input_shape)
    model = build_model(countable(cfg).model, data.spec(pipeline.out_shape))
    if model.net is None:  # built of functions rather than one layer: its parameters, then the whole forward pass
        return parameter_rows(model), pipeline.out_shape
    return summarize(model.net, pipeline.out_shape, max_depth), pipeline.out_shape


def build_setup(cfg: Config, data: Dataset, eval_metrics: dict[str, Metric] | None = None) -> Setup:
    """The run `cfg` describes on `data`. `eval_metrics` (default: the loss, and accuracy for
    classifiers) are what evaluation reports per split.

    Raises:
        ConfigError: a batch larger than the training set.
    """
    loss = LOSSES[cfg.loss.name]
    batch_size, num_train = cfg.data.batch_size, data.num_train
    if problem := batch_too_large(batch_size, num_train):
        raise ConfigError(problem)
    sampling = data.sampling
    steps = steps_per_epoch(sampling, num_train, batch_size)
    if steps < 1:
        raise ConfigError(f"data.batch_size ({batch_size}) leaves no whole batch per epoch with {sampling.kind} sampling "
                          f"of {num_train} examples")
    devices = resolve(cfg.trainer.devices, batch_size)
    example = build_pipeline(cfg.data, data.input_shape).out_shape
    shapes = list(example.values()) if isinstance(example, dict) else [example]
    require_memory(batch_size * sum(math.prod(s) for s in shapes) * 4,
                   f"a batch of {batch_size} examples of {' + '.join('x'.join(map(str, s)) or '1' for s in shapes)} floats",
                   "data.batch_size" + (" or data.resize" if getattr(cfg.data, "resize", None) else ""))
    model = model_for(cfg, data)
    if model.updates:  # several parts, each with its optimizer, updated in turn (a GAN)
        optimizer = parts_optimizer(cfg, model, steps)
        train_step = make_parts_step(model.updates, optimizer)
        eval_metrics = eval_metrics or {}
    else:
        if cfg.optimizers:
            raise ConfigError(f"optimizers: model {cfg.model.name!r} is one part, trained by `optimizer`; "
                              f"optimizers.{next(iter(cfg.optimizers))} is for a model of several (a GAN)")
        optimizer = build_optimizer(cfg.optimizer, steps, cfg.trainer.epochs)
        # a hidden state carried from batch to batch starts afresh with each epoch
        train_step = make_train_step(model, loss, optimizer, cfg.loss.l2_penalty,
                                     reset_every=steps if sampling.carries_state else None,
                                     partial_batches=sampling.keeps_partial_batch(num_train, batch_size), devices=devices)
        eval_metrics = eval_metrics or default_metrics(loss, metrics.split_metrics(cfg), getattr(cfg.data, "top_k", 10))
    eval_fn = make_eval_fn(model, eval_metrics)

    def order(key, epoch):
        return epoch_order(sampling, key, epoch, num_train, batch_size)

    return Setup(cfg, model, optimizer, loss, train_step, order, eval_fn, tuple(eval_metrics), batch_size, num_train, steps,
                 choose_loop(cfg.trainer.loop, model, jax.default_backend()), devices)


def parts_optimizer(cfg: Config, model: Model, steps: int) -> PartsOptimizer:
    """Each part's optimizer: `optimizers.<part>`, else `optimizer`.

    Raises:
        ConfigError: `optimizers` names a part the model does not have.
    """
    parts = [u.part for u in model.updates]
    unknown = sorted(set(cfg.optimizers) - set(parts))
    if unknown:
        raise ConfigError(f"optimizers: {', '.join(unknown)}: not a part of model {cfg.model.name!r}; its parts are {', '.join(parts)}")
    return PartsOptimizer({part: build_optimizer(cfg.optimizers.get(part, cfg.optimizer), steps, cfg.trainer.epochs)
                           for part in parts})


def start_state(setup: Setup, key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """The initial state and the run's keys (`order`: the data order, `step`: dropout and the
    like) from its root key, `PRNGKey(seed)` unless an experiment derives another."""
    init_key, order_key, step_key = jax.random.split(key, 3)
    # one compiled program (cached across runs) rather than one dispatch per layer's random draw;
    # its shapes, known before anything is allocated, say whether the state can fit at all
    lowered = jax.jit(lambda k: init_state(setup.model, setup.optimizer, k)).lower(init_key)
    shapes = lowered.out_info
    unmatched = unmatched_groups(setup.cfg.optimizer.groups, shapes.params)
    if unmatched:
        names = ", ".join(path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(shapes.params))
        raise ConfigError(f"optimizer.groups: {', '.join(map(repr, unmatched))} matches no parameter; the paths are: {names}")
    state_bytes = sum(_nbytes(a) for a in jax.tree_util.tree_leaves(shapes))
    param_bytes = sum(_nbytes(a) for a in jax.tree_util.tree_leaves(shapes.params))
    n_params = sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(shapes.params))
    require_memory(state_bytes + 2 * param_bytes,  # the state, then gradients and updates as large as the params
                   f"the model's {n_params:,} parameters with their optimizer state, gradients and updates",
                   "the model's sizes (model.hidden, channels, blocks) or its input (data.resize)")
    return lowered.compile()(init_key), {"order": order_key, "step": step_key}


def _nbytes(aval) -> int:
    return math.prod(aval.shape) * aval.dtype.itemsize


def device_memory() -> tuple[int, str]:
    """Bytes the first device can hold (an accelerator's limit, or the host's RAM), and its name."""
    device = jax.local_devices()[0]  # another process's devices report nothing here
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind}'s memory"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"


def require_memory(needed: int, what: str, keys: str) -> None:
    """Refuse, before allocating, a run that cannot fit: `what` needs `needed` bytes at least.

    Raises:
        ConfigError: with the estimate, what is available, and the keys that decide it.
    """
    available, where = device_memory()
    if needed > available:
        raise ConfigError(f"{what} need at least {_human(needed)}, more than {where} ({_human(available)}); "
                          f"make {keys} smaller")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def train_arrays(data: Dataset) -> Arrays:
    """The training split on the device, with its loss weights if it has any."""
    w = None if data.w_train is None else jnp.asarray(data.w_train, jnp.float32)
    return Arrays(jax.tree_util.tree_map(jnp.asarray, data.x_train), jax.tree_util.tree_map(jnp.asarray, data.y_train), w)


def eval_splits(data: Dataset, splits: dict[str, Arrays] | None = None) -> dict[str, tuple[Arrays, jax.Array]]:
    """The splits evaluated after every epoch (default: `val`), padded to whole batches."""
    host = lambda a: jax.tree_util.tree_map(np.asarray, a)  # noqa: E731
    splits = splits if splits is not None else {"val": Arrays(host(data.x_val), host(data.y_val))}
    sizes = {name: num_examples(s.x) for name, s in splits.items()}
    return {name: pad_for_eval(s, min(EVAL_BATCH, sizes[name])) for name, s in splits.items() if sizes[name]}
