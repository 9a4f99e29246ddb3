"""D2L 4.9.3: correcting covariate shift and label shift by weighted empirical risk minimisation.

Covariate shift: the training images are drawn with a bias on their mean brightness (by default
bright ones kept, dark ones mostly dropped) while the test images are not. A logistic regression h tells
training images (z = -1) from an unlabeled sample of the unbiased distribution (z = 1); each
training example is weighted by beta_i = min(exp(h(x_i)), c) (4.9.7) and the classifier is
retrained minimising (1/n) sum_i beta_i l(f(x_i), y_i) (4.9.5).

Label shift: train and test sets are drawn with different class priors p(y), q(y). The classifier
f trained on p gives a confusion matrix C on a validation sample from p and mean predictions mu
on the test inputs; C q = mu estimates q (4.9.3.3), and the classifier is retrained with
beta_i = q(y_i) / p(y_i).

Every classifier is `cfg.model` trained with `cfg.optimizer` for `cfg.trainer.epochs`; each
pair (uncorrected, corrected) shares its initialisation and batch order, so the weights are the
only difference between the two.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
from pydantic import Field, field_validator

from dlrun.core import disk
from dlrun.core.config import (
    Config,
    ConfigError,
    OptimizerConfig,
    Section,
    SoftmaxRegressionModel,
    derive,
    validate_options,
)
from dlrun.core.config.data import batch_too_large
from dlrun.core.data import Dataset, load_dataset
from dlrun.core.report import outputs
from dlrun.core.training import inference
from dlrun.core.training.train import train

from .shift_plots import shift_plot
from .shift_stats import confusion_matrix, estimate_target_prior, sample_by_prior


class DiscriminatorOptions(Section):
    """The logistic regression h between training (z = -1) and target-distribution (z = 1) inputs."""

    epochs: int = Field(10, gt=0)
    lr: float = Field(0.03, gt=0, description="SGD; raw pixels make the mean-brightness direction stiff, "
                      "so lr 0.1 oscillates along it")


class CovariateOptions(Section):
    """A training image is kept with probability sigmoid(-strength * z), z its standardised mean
    brightness (negated to favour bright images); strength 0 is no shift."""

    favour: Literal["dark", "bright"] = "bright"
    strength: float = Field(8.0, ge=0)
    num_unlabeled: int = Field(10000, gt=0, description="unbiased, unlabeled images drawn for h")
    clip: float = Field(10.0, gt=0, description="c in beta = min(exp(h(x)), c)")
    discriminator: DiscriminatorOptions = DiscriminatorOptions()


Prior = tuple[float, ...]


class LabelOptions(Section):
    """Class priors are relative weights, one per class, normalised when used."""

    train_prior: Prior = (0.1,) * 5 + (1.0,) * 5
    test_prior: Prior = (1.0,) * 5 + (0.1,) * 5
    num_train: int = Field(20000, gt=0)
    num_val: int = Field(10000, gt=0, description="held-out sample of the training distribution for C")
    num_test: int = Field(5000, gt=0)

    @field_validator("train_prior", "test_prior")
    @classmethod
    def _positive(cls, prior: Prior) -> Prior:
        # every class needs training examples: C must be invertible and beta = q / p finite
        if not prior or min(prior) <= 0:
            raise ValueError(f"expected a positive weight per class, found {list(prior)}")
        return prior


class DistributionShiftOptions(Section):
    kind: Literal["covariate", "label", "both"] = "both"
    covariate: CovariateOptions = CovariateOptions()
    label: LabelOptions = LabelOptions()


HEADLINE = (
    "covariate/acc_uncorrected", "covariate/acc_corrected",
    "label/acc_uncorrected", "label/acc_corrected", "label/prior_l1_error",
)  # fmt: skip


class ShiftResult(NamedTuple):
    summary: dict[str, Any]  # flat names, `<shift>/...`
    rows: list[dict[str, Any]]  # one per trained classifier: uncorrected, corrected
    plot: dict[str, Any]  # what `plot` draws for this shift


def run(cfg: Config, run_dir: str | Path, source: str = "config") -> dict[str, Any]:
    """Train without and with correction for the configured shifts; write config.yaml,
    summary.json, metrics.csv (one row per trained classifier) and shift.png into `run_dir`."""
    opts = validate_options(DistributionShiftOptions, cfg, source)
    if cfg.loss.name != "cross_entropy":
        raise ConfigError(f"{source}: loss.name: distribution_shift trains classifiers; expected "
                          f"'cross_entropy', found '{cfg.loss.name}'")  # fmt: skip
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = load_dataset(cfg.data, cfg.seed)
    if data.num_classes is None:
        raise ConfigError(f"{source}: data.name: distribution_shift needs class labels; '{cfg.data.name}' has none")
    rng = np.random.default_rng([cfg.seed, 4_9])
    key = jax.random.PRNGKey(cfg.seed)
    results: dict[str, ShiftResult] = {}
    if opts.kind in ("covariate", "both"):
        results["covariate"] = covariate_shift(cfg, opts.covariate, data, rng, jax.random.fold_in(key, 1), source, run_dir)
    if opts.kind in ("label", "both"):
        results["label"] = label_shift(cfg, opts.label, data, rng, jax.random.fold_in(key, 2), source, run_dir)

    summary = {k: v for r in results.values() for k, v in r.summary.items()}
    summary = {k: summary[k] for k in HEADLINE if k in summary} | summary  # `dlrun train` prints the first ones
    summary |= {
        "wall_seconds": time.perf_counter() - t_start,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }
    outputs.write_metrics(run_dir / "metrics.csv", [row for r in results.values() for row in r.rows])
    disk.write_json(run_dir / "summary.json", summary)
    disk.write_atomic(run_dir / "shift.png", shift_plot({k: r.plot for k, r in results.items()}, title=cfg.name))
    return summary


# ----------------------------------------------------------------------- covariate shift


def covariate_shift(cfg: Config, opts: CovariateOptions, data: Dataset, rng, key, source: str, run_dir: Path) -> ShiftResult:
    """D2L 4.9.3.2 on a training set drawn with a bias on mean brightness; tested on the official
    (unbiased) test split."""
    t0 = time.perf_counter()
    pool = rng.permutation(len(data.x_train))
    if opts.num_unlabeled >= len(pool):
        raise ConfigError(f"{source}: experiment.covariate.num_unlabeled: expected fewer than the "
                          f"{len(pool)} training images, found {opts.num_unlabeled}")  # fmt: skip
    unlabeled, rest = pool[: opts.num_unlabeled], pool[opts.num_unlabeled :]
    brightness = mean_brightness(data.x_train)
    z = (brightness - brightness.mean()) / brightness.std()
    sign = 1.0 if opts.favour == "dark" else -1.0
    keep_prob = 1.0 / (1.0 + np.exp(sign * opts.strength * z[rest]))
    train = rest[rng.random(len(rest)) < keep_prob]
    x, y, u = data.x_train[train], data.y_train[train], data.x_train[unlabeled]

    # h: logistic regression, i.e. softmax regression with two classes, h = logit(1) - logit(0)
    xz = np.concatenate([x, u])
    zlabels = np.concatenate([np.zeros(len(x), np.int32), np.ones(len(u), np.int32)])  # z = -1, z = 1
    disc_cfg = derive(cfg, {"model": SoftmaxRegressionModel(), "optimizer": OptimizerConfig(lr=opts.discriminator.lr),
                            "trainer.epochs": opts.discriminator.epochs})
    disc = fit(disc_cfg, run_dir / "covariate_discriminator", Dataset(xz, zlabels, xz[:0], zlabels[:0], 2), key)
    logits = predict(disc, xz)
    h = logits[:, 1] - logits[:, 0]
    # (4.9.6) assumes as many target as training examples; the log of the size ratio makes up for it
    beta = np.minimum(np.exp(h[: len(x)] + np.log(len(x) / len(u))), opts.clip)

    train_and_test = classifier_runs(cfg, run_dir, data, "covariate", x, y, (data.x_val, data.y_val), key)
    rows = [train_and_test(None)[1], train_and_test(beta)[1]]
    acc = (rows[0]["test/acc"], rows[1]["test/acc"])
    test_brightness = mean_brightness(data.x_val)
    summary = {
        "covariate/acc_uncorrected": acc[0],
        "covariate/acc_corrected": acc[1],
        "covariate/train_size": len(x),
        "covariate/unlabeled_size": len(u),
        "covariate/test_size": len(data.x_val),
        "covariate/train_brightness": float(brightness[train].mean()),
        "covariate/weighted_train_brightness": float(np.sum(beta * brightness[train]) / np.sum(beta)),
        "covariate/unlabeled_brightness": float(brightness[unlabeled].mean()),
        "covariate/test_brightness": float(test_brightness.mean()),
        "covariate/brightness_std": float(brightness.std()),
        "covariate/discriminator_acc": float(np.mean((h > 0) == (zlabels == 1))),
        "covariate/beta_min": float(beta.min()),
        "covariate/beta_max": float(beta.max()),
        "covariate/beta_clipped_fraction": float(np.mean(beta >= opts.clip)),
        "covariate/clip": opts.clip,
        "covariate/seconds": time.perf_counter() - t0,
    }
    figure = {"train": brightness[train], "test": test_brightness, "beta": beta, "clip": opts.clip, "acc": acc}
    return ShiftResult(summary, rows, figure)


def mean_brightness(images: np.ndarray) -> np.ndarray:
    """(n, ...) -> (n,): the mean pixel value of each image, the feature the bias acts on."""
    return images.reshape(len(images), -1).mean(axis=1)


# --------------------------------------------------------------------------- label shift


def label_shift(cfg: Config, opts: LabelOptions, data: Dataset, rng, key, source: str, run_dir: Path) -> ShiftResult:
    """D2L 4.9.3.3: estimate the test prior from the confusion matrix, then reweight by q(y)/p(y)."""
    t0 = time.perf_counter()
    k = data.num_classes
    for name, prior in (("train_prior", opts.train_prior), ("test_prior", opts.test_prior)):
        if len(prior) != k:
            raise ConfigError(f"{source}: experiment.label.{name}: expected {k} weights (one per class), "
                              f"found {len(prior)}")  # fmt: skip
    train, val = sample_by_prior(data.y_train, opts.train_prior, (opts.num_train, opts.num_val), rng, "train", source)
    (test,) = sample_by_prior(data.y_val, opts.test_prior, (opts.num_test,), rng, "test", source)
    x, y = data.x_train[train], data.y_train[train]
    x_test, y_test = data.x_val[test], data.y_val[test]
    p = np.bincount(y, minlength=k) / len(y)
    q_true = np.bincount(y_test, minlength=k) / len(y_test)

    train_and_test = classifier_runs(cfg, run_dir, data, "label", x, y, (x_test, y_test), key)
    result, uncorrected = train_and_test(None)
    # C on the held-out sample of the training distribution, mu on the (unlabeled) test inputs
    confusion = confusion_matrix(predict(result, data.x_train[val]).argmax(1), data.y_train[val], k)
    mu = np.bincount(predict(result, x_test).argmax(1), minlength=k) / len(x_test)
    q_hat = estimate_target_prior(confusion, mu)
    rows = [uncorrected, train_and_test(q_hat[y] / p[y])[1]]
    acc = (rows[0]["test/acc"], rows[1]["test/acc"])
    summary = {
        "label/acc_uncorrected": acc[0],
        "label/acc_corrected": acc[1],
        "label/prior_l1_error": float(np.abs(q_hat - q_true).sum()),
        "label/prior_l1_shift": float(np.abs(p - q_true).sum()),  # the error of assuming no shift
        "label/train_size": len(x),
        "label/val_size": len(val),
        "label/test_size": len(test),
        "label/train_prior": p.tolist(),
        "label/test_prior": q_true.tolist(),
        "label/estimated_test_prior": q_hat.tolist(),
        "label/seconds": time.perf_counter() - t0,
    }
    return ShiftResult(summary, rows, {"p": p, "q": q_true, "q_hat": q_hat, "acc": acc})


# ---------------------------------------------------------------------- training pieces


def classifier_runs(cfg: Config, run_dir: Path, data: Dataset, shift: str, x, y, test, key):
    """`train_and_test(weights) -> (Result, metrics row)`: trains `cfg.model` on (x, y) weighted by
    `weights` (None: unweighted) in `run_dir/<shift>_<uncorrected|corrected>/`, evaluated on
    test = (x, y). Every call starts from the same initialisation and batch order (`key`), so
    that runs differ only in their weights."""

    def train_and_test(weights):
        t0 = time.perf_counter()
        name = f"{shift}_{'uncorrected' if weights is None else 'corrected'}"
        result = fit(cfg, run_dir / name, Dataset(x, y, test[0], test[1], data.num_classes), key, weights)
        acc = float(np.mean(predict(result, test[0]).argmax(1) == test[1]))
        row = {"shift": shift, "corrected": weights is not None, "train_size": len(x),
               "train/loss": result.rows[-1]["train/loss"], "test/acc": acc, "seconds": time.perf_counter() - t0}
        return result, row

    return train_and_test


def fit(cfg: Config, run_dir: Path, data: Dataset, key, weights=None):
    """Train `cfg`'s model on `data` through the one training loop, minimising the mean of the
    per-example losses weighted by `weights` (4.9.5), normalised by their mean so that the
    weighted risk keeps the scale (and the learning rate) of the plain one."""
    if weights is not None:
        weights = np.asarray(weights, np.float32)
        data = data._replace(w_train=weights / weights.mean())
    if problem := batch_too_large(cfg.data.batch_size, len(data.x_train), f"the training sample of {run_dir.name}"):
        raise ConfigError(f"{problem}; make data.batch_size smaller or the shift weaker")
    sub = derive(cfg, {"name": run_dir.name, "trainer.progress": "none", "trainer.checkpoint_every": 0})
    return train(sub, run_dir, data=data, key=key, plot=False, splits=None if len(data.x_val) else {})


def predict(result, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """A trained model's outputs (logits) for every row of x, as a host array."""
    return inference.predict(result.setup.model, result.state.params, result.state.model_state, x, batch_size)
