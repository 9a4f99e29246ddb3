"""Using a trained model: a run directory's config and newest checkpoint back in memory, and what
each kind of model does with them (a language model continues text; a translation model
translates, `core.training.translate`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ..config import Config, load_config, metrics
from ..data import Dataset, load_dataset
from ..data.dataset import num_examples
from ..data.text import clean, tokenize
from ..errors import ConfigError
from ..nn.rnn import greedy_continuation
from . import checkpoint
from .setup import Setup, build_setup, start_state
from .state import Arrays, TrainState
from .steps import pad_for_eval
from .translate import attention_panels, translation_report


class LoadedRun(NamedTuple):
    cfg: Config
    data: Dataset
    setup: Setup
    state: TrainState


def load_run(run_dir: str | Path, data: Dataset | None = None) -> LoadedRun:
    """The run's config, data set (for its vocabulary and validation split), model and the state
    of its newest checkpoint.

    Raises:
        ConfigError: not a run directory, or a run with no checkpoint.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    if not checkpoint.list_checkpoints(run_dir / "checkpoints"):
        raise ConfigError(f"{run_dir}: the run has no checkpoint to predict with (was it trained?)")
    cfg = load_config(run_dir / "config.yaml")
    data = data if data is not None else load_dataset(cfg.data, cfg.seed)
    setup = build_setup(cfg, data)
    template, _ = start_state(setup, jax.random.PRNGKey(cfg.seed))
    state = checkpoint.load_latest(run_dir / "checkpoints", template).state
    return LoadedRun(cfg, data, setup, state)


def continue_text(setup: Setup, state: TrainState, data: Dataset, prefix: str, num_tokens: int) -> str:
    """The prefix and the `num_tokens` tokens a language model predicts after it, greedily."""
    vocab = data.meta["vocab"]
    index = {t: i for i, t in enumerate(vocab)}
    token = data.meta["token"]
    tokens = tokenize(clean(prefix), token)
    ids = greedy_continuation(setup.model.apply, state.params, state.model_state, [index.get(t, 0) for t in tokens], num_tokens)
    words = [vocab[i] for i in ids]
    return "".join(words) if token == "char" else " ".join(words)


def language_model_sample(setup: Setup, state: TrainState, data: Dataset) -> dict[str, Any]:
    """summary.json's sample: the continuation of the data config's `prefix`."""
    cfg = setup.cfg.data
    return {"prefix": cfg.prefix, "tokens": cfg.predict_tokens,
            "text": continue_text(setup, state, data, cfg.prefix, cfg.predict_tokens)}


def model_kind(setup: Setup, data: Dataset) -> str:
    """`language_model`, `translation`, `classifier` or `regression`: what `dlrun predict` can do with it."""
    task = metrics.task(setup.cfg)
    if task != "supervised":
        return task
    return "classifier" if setup.loss.classify else "regression"


def after_training(setup: Setup, state: TrainState, data: Dataset, pictures: bool = False) -> tuple[dict[str, Any], list]:
    """What summary.json adds for a model that generates, and (with `pictures`) the attention
    panels it has to show: a language model's continuation of the configured prefix; a
    translation model's translations and held-out BLEU, and for a model with attention its
    weights on the example sentences (`core.report.figures.Pictures.attention`)."""
    kind = model_kind(setup, data)
    if kind == "language_model":
        return {"sample": language_model_sample(setup, state, data)}, []
    if kind == "adversarial":
        return {"generated": generated_statistics(setup, state, data)}, []
    if kind == "translation":
        cfg = setup.cfg.data
        translator = setup.model.translator
        panels = attention_panels(translator, state.params, data.meta, list(cfg.sentences)) if pictures and cfg.sentences else []
        return translation_report(translator, state.params, data.meta, cfg.sentences, cfg.beam_size), panels
    return {}, []


def generated_statistics(setup: Setup, state: TrainState, data: Dataset, n: int = 1000) -> dict[str, Any]:
    """The mean and covariance of `n` generated examples next to the data's (D2L 17.1 compares
    the two clouds), drawn with a key of the run's seed."""
    from ..nn.gan import sample

    x = np.asarray(sample(setup.model, state.params, state.model_state, jax.random.PRNGKey(setup.cfg.seed), n,
                          setup.cfg.model.latent_dim), np.float64)
    real = np.asarray(data.x_train, np.float64)
    return {"mean": np.mean(x, 0).tolist(), "cov": np.cov(x.T).tolist(),
            "data_mean": np.mean(real, 0).tolist(), "data_cov": np.cov(real.T).tolist()}


@partial(jax.jit, static_argnums=0)
def _apply_batches(model, params, model_state, batches):
    return jax.lax.map(lambda xb: model.apply(params, model_state, xb, train=False)[0], batches)


def predict(model, params: Any, model_state: Any, x: Any, batch_size: int = 1024) -> np.ndarray:
    """The one way to use a trained model: its outputs (logits, predictions) for every example of
    `x` (an array, or named inputs), in evaluation mode, batched on the device and padded to whole
    batches so that every size compiles once per batch shape; a host array of one row per example."""
    n = num_examples(x)
    batches, _ = pad_for_eval(Arrays(jax.tree_util.tree_map(np.asarray, x), np.zeros(n, np.float32)), min(batch_size, n))
    out = np.asarray(_apply_batches(model, params, model_state, batches.x))
    return out.reshape(-1, *out.shape[2:])[:n]


class ImagePredictions(NamedTuple):
    images: Any  # (n, height, width, channels)
    labels: list[str]
    predictions: list[str]
    accuracy: float


def predict_images(run: LoadedRun, count: int) -> ImagePredictions:
    """The first `count` validation images with their true and predicted classes."""
    x, y = run.data.x_val[:count], run.data.y_val[:count]
    predicted = predict(run.setup.model, run.state.params, run.state.model_state, x).argmax(-1)
    names = run.data.label_names or tuple(str(i) for i in range(run.data.num_classes or 0))
    return ImagePredictions(x, [names[int(i)] for i in y], [names[int(i)] for i in predicted],
                            float(np.mean(predicted == np.asarray(y))))
