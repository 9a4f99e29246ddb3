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

import io
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dlrun.core import outputs
from dlrun.core.config import Config, ConfigError, OptimizerConfig, SoftmaxRegressionModel, to_yaml, validate_options
from dlrun.core.data import Dataset, load_dataset
from dlrun.core.losses import cross_entropy
from dlrun.core.models import Model, build_model
from dlrun.core.optimizers import build_optimizer
from dlrun.core.steps import Arrays, epoch_order, init_state, make_epoch_fn, make_train_step, pad_for_eval
from dlrun.core.train import TrainingDiverged


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscriminatorOptions(Options):
    """The logistic regression h between training (z = -1) and target-distribution (z = 1) inputs."""

    epochs: int = Field(10, gt=0)
    lr: float = Field(0.03, gt=0, description="SGD; raw pixels make the mean-brightness direction stiff, "
                      "so lr 0.1 oscillates along it")


class CovariateOptions(Options):
    """A training image is kept with probability sigmoid(-strength * z), z its standardised mean
    brightness (negated to favour bright images); strength 0 is no shift."""

    favour: Literal["dark", "bright"] = "bright"
    strength: float = Field(8.0, ge=0)
    num_unlabeled: int = Field(10000, gt=0, description="unbiased, unlabeled images drawn for h")
    clip: float = Field(10.0, gt=0, description="c in beta = min(exp(h(x)), c)")
    discriminator: DiscriminatorOptions = DiscriminatorOptions()


Prior = tuple[float, ...]


class LabelOptions(Options):
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


class DistributionShiftOptions(Options):
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
    outputs.write_atomic(run_dir / "config.yaml", to_yaml(cfg))
    t_start = time.perf_counter()
    data = load_dataset(cfg.data, cfg.seed)
    if data.num_classes is None:
        raise ConfigError(f"{source}: data.name: distribution_shift needs class labels; '{cfg.data.name}' has none")
    rng = np.random.default_rng([cfg.seed, 4_9])
    key = jax.random.PRNGKey(cfg.seed)
    results: dict[str, ShiftResult] = {}
    if opts.kind in ("covariate", "both"):
        results["covariate"] = covariate_shift(cfg, opts.covariate, data, rng, jax.random.fold_in(key, 1), source)
    if opts.kind in ("label", "both"):
        results["label"] = label_shift(cfg, opts.label, data, rng, jax.random.fold_in(key, 2), source)

    summary = {k: v for r in results.values() for k, v in r.summary.items()}
    summary = {k: summary[k] for k in HEADLINE if k in summary} | summary  # `dlrun train` prints the first ones
    summary |= {
        "wall_seconds": time.perf_counter() - t_start,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
    }
    outputs.write_metrics(run_dir / "metrics.csv", [row for r in results.values() for row in r.rows])
    outputs.write_json(run_dir / "summary.json", summary)
    outputs.write_atomic(run_dir / "shift.png", plot({k: r.plot for k, r in results.items()}, title=cfg.name))
    return summary


# ----------------------------------------------------------------------- covariate shift


def covariate_shift(cfg: Config, opts: CovariateOptions, data: Dataset, rng, key, source: str) -> ShiftResult:
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
    disc = build_model(SoftmaxRegressionModel(), data.input_shape, 2)
    xz = np.concatenate([x, u])
    zlabels = np.concatenate([np.zeros(len(x), np.int32), np.ones(len(u), np.int32)])  # z = -1, z = 1
    fit_disc = make_fitter(disc, OptimizerConfig(lr=opts.discriminator.lr), opts.discriminator.epochs,
                           cfg.data.batch_size, len(xz))  # fmt: skip
    params, state, _ = fit_disc(xz, zlabels, None, key)
    logits = predict(disc, params, state, xz)
    h = logits[:, 1] - logits[:, 0]
    # (4.9.6) assumes as many target as training examples; the log of the size ratio makes up for it
    beta = np.minimum(np.exp(h[: len(x)] + np.log(len(x) / len(u))), opts.clip)

    model, train_and_test = classifier_runs(cfg, data, "covariate", x, y, (data.x_val, data.y_val), key)
    rows = [train_and_test(None)[2], train_and_test(beta)[2]]
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


def label_shift(cfg: Config, opts: LabelOptions, data: Dataset, rng, key, source: str) -> ShiftResult:
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

    model, train_and_test = classifier_runs(cfg, data, "label", x, y, (x_test, y_test), key)
    params, state, uncorrected = train_and_test(None)
    # C on the held-out sample of the training distribution, mu on the (unlabeled) test inputs
    confusion = confusion_matrix(predict(model, params, state, data.x_train[val]).argmax(1), data.y_train[val], k)
    mu = np.bincount(predict(model, params, state, x_test).argmax(1), minlength=k) / len(x_test)
    q_hat = estimate_target_prior(confusion, mu)
    rows = [uncorrected, train_and_test(q_hat[y] / p[y])[2]]
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


def sample_by_prior(labels, prior, sizes, rng, split: str, source: str) -> list[np.ndarray]:
    """Disjoint index sets, the s-th of sizes[s] examples with class proportions `prior`
    (normalised; counts rounded by largest remainder), drawn without replacement."""
    prior = np.asarray(prior, np.float64) / np.sum(prior)
    counts = [_round_counts(prior * n) for n in sizes]
    picks: list[list[np.ndarray]] = [[] for _ in sizes]
    for c in range(len(prior)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        need = sum(int(cnt[c]) for cnt in counts)
        if need > len(idx):
            raise ConfigError(
                f"{source}: experiment.label: the {split} split has {len(idx)} examples of class {c}, "
                f"but the priors and sizes ask for {need}; lower the sizes or flatten the priors"
            )
        start = 0
        for s, cnt in enumerate(counts):
            picks[s].append(idx[start : start + cnt[c]])
            start += cnt[c]
    return [rng.permutation(np.concatenate(p)) for p in picks]


def _round_counts(expected: np.ndarray) -> np.ndarray:
    counts = np.floor(expected).astype(int)
    short = int(round(expected.sum())) - counts.sum()
    counts[np.argsort(counts - expected)[:short]] += 1  # largest remainders first
    return counts


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C[i, j] = P(y_hat = i | y = j) on a sample of the training distribution: of the examples
    of true class j, the fraction predicted i. Under label shift P(y_hat | y) is the same on the
    test distribution, so mu(y_hat) = C q(y) (D2L 4.9.3.3)."""
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (predicted, labels), 1.0)
    return joint / np.maximum(joint.sum(axis=0, keepdims=True), 1.0)


def estimate_target_prior(confusion: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Solve C q = mu by least squares, clip to q >= 0 and renormalise (C may be ill-conditioned
    or mu noisy, so the exact C^-1 mu can leave the simplex)."""
    q, *_ = np.linalg.lstsq(confusion, mu, rcond=None)
    q = np.clip(q, 0.0, None)
    if q.sum() <= 0:
        raise ValueError("the estimated target prior is zero everywhere; the confusion matrix is degenerate")
    return q / q.sum()


# ---------------------------------------------------------------------- training pieces


def classifier_runs(cfg: Config, data: Dataset, shift: str, x, y, test, key):
    """cfg.model and a `train_and_test(weights) -> (params, model_state, metrics row)` that trains
    it on (x, y) weighted by `weights` (None: unweighted) and tests its accuracy on test = (x, y).
    Every call starts from the same initialisation and batch order, so that runs differ only in
    their weights."""
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    fit = make_fitter(model, cfg.optimizer, cfg.trainer.epochs, cfg.data.batch_size, len(x), cfg.loss.l2_penalty)

    def train_and_test(weights):
        t0 = time.perf_counter()
        params, state, losses = fit(x, y, weights, key)
        acc = float(np.mean(predict(model, params, state, test[0]).argmax(1) == test[1]))
        row = {"shift": shift, "corrected": weights is not None, "train_size": len(x), "train/loss": losses[-1],
               "test/acc": acc, "seconds": time.perf_counter() - t0}  # fmt: skip
        return params, state, row

    return model, train_and_test


def weighted_cross_entropy(logits: jax.Array, labels_and_weights) -> jax.Array:
    """beta_i l(f(x_i), y_i) per example (4.9.5)."""
    labels, weights = labels_and_weights
    return cross_entropy(logits, labels) * weights


_epoch_order = jax.jit(epoch_order, static_argnums=(2, 3))


def make_fitter(model: Model, opt_cfg: OptimizerConfig, epochs: int, batch_size: int, num_examples: int,
                l2_penalty: float = 0.0):  # fmt: skip
    """`fit(x, y, weights, key) -> (params, model_state, per-epoch mean loss)`: `epochs` of
    minibatch training on `num_examples` examples weighted by `weights` (None: all 1).

    The weights are normalised by their mean, so that the weighted risk keeps the scale (and
    the learning rate) of the plain one. One compiled epoch serves every call.
    """
    batch_size = min(batch_size, num_examples)
    optimizer = build_optimizer(opt_cfg, num_examples // batch_size, epochs)
    step = make_train_step(model, weighted_cross_entropy, optimizer, classify=False, l2_penalty=l2_penalty)
    epoch_fn = jax.jit(make_epoch_fn(step), donate_argnums=0)

    def fit(x, y, weights, key):
        weights = np.ones(len(x), np.float32) if weights is None else np.asarray(weights, np.float32)
        data = Arrays(jnp.asarray(x), (jnp.asarray(y), jnp.asarray(weights / weights.mean())))
        init_key, order_key, step_key = jax.random.split(key, 3)
        state = init_state(model, optimizer, init_key)
        losses = []
        for epoch in range(1, epochs + 1):
            order = _epoch_order(order_key, epoch, num_examples, batch_size)
            state, metrics = epoch_fn(state, data, order, step_key)
            losses.append(float(np.mean(jax.device_get(metrics["loss"]))))
            if not np.isfinite(losses[-1]):
                raise TrainingDiverged(f"training loss became {losses[-1]} in epoch {epoch}; try a lower optimizer.lr")
        return state.params, state.model_state, losses

    return fit


@partial(jax.jit, static_argnums=0)
def _apply_batches(model: Model, params, model_state, batches: jax.Array) -> jax.Array:
    return jax.lax.map(lambda xb: model.apply(params, model_state, xb, train=False)[0], batches)


def predict(model: Model, params, model_state, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The model's outputs (logits) for every row of x, as a host array."""
    batches, _ = pad_for_eval(Arrays(jnp.asarray(x), jnp.zeros(len(x))), min(batch_size, len(x)))
    out = np.asarray(_apply_batches(model, params, model_state, batches.x))
    return out.reshape(-1, out.shape[-1])[: len(x)]


# --------------------------------------------------------------------------------- plot


def plot(plots: dict[str, Any], title: str = "") -> bytes:
    """Brightness of train vs test and the beta weights (covariate), priors (label), and test
    accuracy without/with correction, as PNG bytes."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    panels = (2 if "covariate" in plots else 0) + (1 if "label" in plots else 0) + 1
    fig = Figure(figsize=(4.2 * panels, 3.6), layout="constrained")
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    if "covariate" in plots:
        cov = plots["covariate"]
        ax = axes.pop(0)
        bins = np.linspace(0, max(cov["train"].max(), cov["test"].max()), 40)
        ax.hist(cov["train"], bins, density=True, alpha=0.6, label="biased train")
        ax.hist(cov["test"], bins, density=True, alpha=0.6, label="test")
        ax.hist(cov["train"], bins, density=True, weights=cov["beta"], histtype="step", color="k",
                label="train, beta-weighted")  # fmt: skip
        ax.set(xlabel="mean brightness", ylabel="density", title="covariate shift")
        ax.legend(fontsize=8)
        ax = axes.pop(0)
        ax.hist(cov["beta"], np.geomspace(max(cov["beta"].min(), 1e-4), cov["clip"] * 1.01, 40))
        ax.axvline(cov["clip"], color="k", linestyle="--", label=f"c = {cov['clip']:g}")
        ax.set(xscale="log", xlabel="beta = min(exp(h(x)), c)", ylabel="training examples", title="weights")
        ax.legend(fontsize=8)
    if "label" in plots:
        lab = plots["label"]
        ax = axes.pop(0)
        k = np.arange(len(lab["p"]))
        priors = {"train p(y)": lab["p"], "test q(y)": lab["q"], "estimated q": lab["q_hat"]}
        for i, (name, prior) in enumerate(priors.items()):
            ax.bar(k + (i - 1) * 0.27, prior, 0.27, label=name)
        top = 1.35 * max(max(prior) for prior in priors.values())  # room for the legend
        ax.set(xlabel="class", ylabel="prior", title="label shift", xticks=k, ylim=(0, top))
        ax.legend(fontsize=8)
    ax = axes.pop(0)
    shifts = [s for s in ("covariate", "label") if s in plots]
    pos = np.arange(len(shifts))
    for i, name in enumerate(("uncorrected", "corrected")):
        bars = ax.bar(pos + (i - 0.5) * 0.38, [plots[s]["acc"][i] for s in shifts], 0.38, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set(xticks=pos, xticklabels=shifts, ylabel="test accuracy", ylim=(0, 1.15), title="correction")
    ax.legend(loc="upper center", ncols=2, fontsize=8)
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
