"""Using a trained model: a run directory's config and newest checkpoint back in memory, and what
each kind of model does with them (a language model continues text; a translation model
translates, `core.training.translate`)."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np

from ..config import Config, load_config, metrics
from ..data import Dataset, load_dataset
from ..data.dataset import num_examples
from ..data.text import clean, decode, encode
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
    tokens = encode(clean(prefix), token, vocab)  # subwords: the longest learned symbols (D2L 14.6)
    ids = greedy_continuation(setup.model.apply, state.params, state.model_state, [index.get(t, 0) for t in tokens], num_tokens)
    return decode([vocab[i] for i in ids], token)


def language_model_sample(setup: Setup, state: TrainState, data: Dataset) -> dict[str, Any]:
    """summary.json's sample: the continuation of the data config's `prefix`."""
    cfg = setup.cfg.data
    return {"prefix": cfg.prefix, "tokens": cfg.predict_tokens,
            "text": continue_text(setup, state, data, cfg.prefix, cfg.predict_tokens)}


def model_kind(setup: Setup, data: Dataset) -> str:
    """`language_model`, `translation`, `adversarial`, `rating`, `ranking`, `click_through`,
    `classifier` or `regression`: what `dlrun predict` can do with it."""
    task = metrics.task(setup.cfg)
    if task != "supervised":
        return task
    if setup.cfg.data.name == "ctr":
        return "click_through"
    return "classifier" if setup.loss.classify else "regression"


def after_training(setup: Setup, state: TrainState, data: Dataset, pictures: bool = False,
                   rows: Sequence[dict[str, Any]] = ()) -> tuple[dict[str, Any], list]:
    """What summary.json adds for a model that generates, and (with `pictures`) the attention
    panels it has to show: a language model's continuation of the configured prefix; a
    translation model's translations and held-out BLEU, and for a model with attention its
    weights on the example sentences (`core.report.figures.Pictures.attention`)."""
    kind = model_kind(setup, data)
    if kind == "language_model":
        return {"sample": language_model_sample(setup, state, data)}, []
    if kind == "adversarial":
        report = {"ln2_gap": ln2_gap(rows[-1])} if rows else {}
        if data.x_train.ndim == 2:
            report["generated"] = generated_statistics(setup, state, data)
        return report, []
    if setup.cfg.data.name in ("movielens", "movielens_ranking", "ctr"):
        return recommender_report(setup, state, data), []
    if kind == "translation":
        cfg = setup.cfg.data
        translator = setup.model.translator
        panels = attention_panels(translator, state.params, data.meta, list(cfg.sentences)) if pictures and cfg.sentences else []
        return translation_report(translator, state.params, data.meta, cfg.sentences, cfg.beam_size), panels
    if kind == "bert_pretraining" and rows:  # the book prints the means over every step (D2L 14.10)
        return {f"all_steps/{k}": float(np.mean([r[f"train/{k}"] for r in rows])) for k in ("mlm_loss", "nsp_loss")}, []
    if setup.cfg.model.name == "skip_gram":  # nearest neighbours of the configured words (D2L 14.4.3)
        from ..nn.word2vec import embedding_report

        return embedding_report(setup, state, data), []
    if "val_majority_share" in data.meta:  # a segmentation's pixel accuracy of always guessing the commonest class
        return {"val_majority_share": data.meta["val_majority_share"]}, []
    return {}, []


def recommender_report(setup: Setup, state: TrainState, data: Dataset) -> dict[str, Any]:
    """What a recommender's summary adds: the exact AUC of a click model over the held-out lines
    (not a mean over batches, so not an epoch metric), and what is known of generated data (the
    ratings' noise floor, the best achievable log-loss and AUC of a generated click file)."""
    from ..data.ctr import auc

    report = {k: data.meta[k] for k in ("noise_floor", "val/loss_best", "val/auc_best") if k in data.meta}
    if setup.cfg.data.name == "ctr":
        logits = predict(setup.model, state.params, state.model_state, data.x_val)
        report["val/auc"] = auc(logits, np.asarray(data.y_val))
    return report


def ln2_gap(row: dict[str, Any]) -> float:
    """How far the last epoch's losses end from ln 2 = 0.6931, the value of both at the GAN's
    equilibrium, where the discriminator can no longer tell real from generated (D2L 17.1):
    the larger of |loss_D - ln 2| and |loss_G - ln 2|."""
    return max(abs(row["train/loss_D"] - math.log(2)), abs(row["train/loss_G"] - math.log(2)))


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
def _apply_batches(apply, params, model_state, batches):
    return jax.lax.map(lambda xb: apply(params, model_state, xb, train=False)[0], batches)


def predict(model, params: Any, model_state: Any, x: Any, batch_size: int = 1024) -> np.ndarray:
    """The one way to use a trained model: its outputs (logits, predictions) for every example of
    `x` (an array, or named inputs), in evaluation mode, batched on the device and padded to whole
    batches so that every size compiles once per batch shape; a host array of one row per example."""
    n = num_examples(x)
    batches, _ = pad_for_eval(Arrays(jax.tree_util.tree_map(np.asarray, x), np.zeros(n, np.float32)), min(batch_size, n))
    out = np.asarray(_apply_batches(model.apply, params, model_state, batches.x))
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


def recommend(run: LoadedRun, user: int, top: int) -> list[tuple[int, float]]:
    """The `top` items a recommender scores highest for `user`, among those the user has no
    training interaction with: (item, score) pairs, best first. Users and items are numbered
    as in the data file (from 1: ml-100k's u.data); a score is a predicted rating (16.3, 16.4)
    or a ranking score (16.6, 16.7).

    Raises:
        ConfigError: a user the data does not have.
    """
    data, cfg = run.data, run.cfg.data
    num_users, num_items = data.meta["num_users"], data.meta["num_items"]
    if not 1 <= user <= num_users:
        raise ConfigError(f"--user {user}: the run's users are numbered 1-{num_users}")
    u = user - 1
    model, params, model_state = run.setup.model, run.state.params, run.state.model_state
    if cfg.name == "movielens" and cfg.form == "item_vectors":  # AutoRec: each item's column, reconstructed
        scores = predict(model, params, model_state, data.x_train)[:, u]
        seen = np.asarray(data.x_train)[:, u] != 0
    elif cfg.name == "movielens":
        scores = predict(model, params, model_state, {"user": np.full(num_items, u, np.int32), "item": np.arange(num_items, dtype=np.int32)})
        seen = np.zeros(num_items, bool)
        seen[data.x_train["item"][data.x_train["user"] == u]] = True
    else:
        x = {"user": np.array([u], np.int32)}
        if "seq" in data.x_val:  # the user's last training items (Caser)
            rows = np.flatnonzero(data.x_val["user"] == u)
            if not len(rows):
                raise ConfigError(f"--user {user}: the user has no held-out interaction, so no sequence to continue")
            x["seq"] = data.x_val["seq"][rows[:1]]
        scores, seen = predict(model, params, model_state, x)[0], data.negatives[u]
    scores = np.where(seen, -np.inf, np.asarray(scores, np.float64))
    best = np.argsort(-scores, kind="stable")[:top]
    return [(int(i) + 1, float(scores[i])) for i in best if np.isfinite(scores[i])]
