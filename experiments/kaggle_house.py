"""Kaggle house prices with K-fold cross-validation (D2L 4.10).

The training table is shuffled with the seed and cut into k folds; each fold validates a model
trained on the other k - 1, with the preprocessing (standardisation, one-hot categories) fitted
on those training rows only. The error is the book's log-RMSE, sqrt(mean((log y_hat - log y)^2)):
the book's model predicts prices (`data.log_target: false`), clipped to >= 1 before the log; with
`data.log_target: true` it predicts log prices and the log-RMSE is the RMSE of its predictions.
With `predict`, a model trained on every training row prices the test file for a Kaggle
submission (D2L 4.10.8).

Writes config.yaml, folds.csv (final log-RMSE per fold), metrics.csv (per fold and epoch),
summary.json, curves.png (log-RMSE against epoch, one colour per fold) and submission.csv.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, ConfigError, CSVData, Section, derive, validate_options
from dlrun.core.config.data import batch_too_large
from dlrun.core.data import DataError, Dataset, tabular
from dlrun.core.errors import TrainingDiverged
from dlrun.core.nn.losses import LOSSES, Metric
from dlrun.core.report import outputs, plots, progress
from dlrun.core.training import inference
from dlrun.core.training.state import Arrays
from dlrun.core.training.summary import runtime
from dlrun.core.training.train import train

if TYPE_CHECKING:
    import pandas as pd  # imported by the functions that build tables: `dlrun train` of any config imports this module

BOOK_VAL_LOG_RMSE = (0.16, 0.19)  # D2L 4.10.7: average valid log-RMSE of the linear model, k = 5


class KaggleHouseOptions(Section):
    """The keys beside `experiment.name: kaggle_house`."""

    k: int = Field(5, ge=2, description="folds of cross-validation")
    test_file: str = Field("kaggle_house_pred_test.csv", description="rows to price for submission.csv")
    predict: bool = Field(True, description="train on all rows and write submission.csv for test_file")


class Fit(NamedTuple):
    rows: list[dict[str, Any]]  # per epoch: fold, epoch, <split>/log_rmse
    predict: Callable[[np.ndarray], np.ndarray]  # features (n, d) -> predictions (n, 1)
    seconds: float  # training, without compiling
    compile_seconds: float  # 0 when a program compiled for an earlier fold was reused




def run(cfg: Config, run_dir: str | Path, source: str = "config") -> dict[str, Any]:
    """K-fold cross-validation of `cfg`'s model on `cfg.data.file`, then the submission."""
    import pandas as pd

    opts = validate_options(KaggleHouseOptions, cfg, source)
    _check(cfg, source)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    data = cfg.data
    path = tabular.locate(data.file, data.dir)
    features, y = tabular.split_target(tabular.read_table(path), data.target, data.drop, str(path))
    log_y = tabular.log_of(y, str(path), data.target)  # checks that every price is positive
    y = log_y if data.log_target else y
    test_path = tabular.locate(opts.test_file, data.dir) if opts.predict else None  # fail before training
    if len(y) < opts.k:
        raise ConfigError(f"{source}: experiment.k: {opts.k} folds need at least {opts.k} rows; {path} has {len(y)}")

    folds = fold_indices(len(y), opts.k, cfg.seed)
    splits = []
    for train_idx, val_idx in folds:
        # fitted on this fold's training rows only, so that no validation row shapes the features
        pre = tabular.Preprocessor.fit(features.iloc[train_idx])
        splits.append({
            name: (pre.transform(features.iloc[idx], str(path)), y[idx])
            for name, idx in (("train", train_idx), ("val", val_idx))
        })  # fmt: skip
    # Folds see different categories, so their feature counts differ; zero columns (a category
    # the fold never saw) pad them to one width, which changes no prediction (a zero input adds
    # nothing and gets no gradient) and gives every fold the same shapes.
    width = max(split["train"][0].shape[1] for split in splits)
    rows: list[dict[str, Any]] = []
    fold_rows: list[dict[str, Any]] = []
    notes = progress.notes(cfg.trainer.progress)
    try:
        for i, split in enumerate(splits, start=1):
            result = fit(cfg, run_dir / f"fold{i}", i, {name: (_pad(x, width), t) for name, (x, t) in split.items()}, source)
            rows += result.rows
            final = {k: v for k, v in result.rows[-1].items() if "/" in k}
            fold_rows.append(
                {"fold": i, **final, "num_train": len(split["train"][1]), "num_val": len(split["val"][1]),
                 "num_features": split["train"][0].shape[1], "seconds": result.seconds,
                 "compile_seconds": result.compile_seconds}
            )  # fmt: skip
            outputs.write_metrics(run_dir / "folds.csv", fold_rows)
            notes.note(f"fold {i}/{opts.k}  " + "  ".join(f"{k} {v:.4f}" for k, v in final.items()))
    finally:
        if rows:
            outputs.write_metrics(run_dir / "metrics.csv", rows)
            plot_folds(run_dir / "curves.png", rows, title=f"{cfg.name}: {opts.k}-fold log-RMSE")

    per_fold = pd.DataFrame(fold_rows)
    summary: dict[str, Any] = {name: float(per_fold[name].mean()) for name in ("val/log_rmse", "train/log_rmse")}
    summary |= {f"{name}_std": float(per_fold[name].std(ddof=0)) for name in ("val/log_rmse", "train/log_rmse")}
    for row in fold_rows:
        summary |= {f"fold{row['fold']}/{k}": row[k] for k in ("train/log_rmse", "val/log_rmse")}
    summary |= {
        "book/val/log_rmse_range": list(BOOK_VAL_LOG_RMSE),
        "k": opts.k,
        "epochs": cfg.trainer.epochs,
        "num_rows": len(y),
        "train_seconds": float(per_fold["seconds"].sum()),
        "compile_seconds": float(per_fold["compile_seconds"].sum()),
    }
    if test_path is not None:
        summary |= predict_test(cfg, features, y, path, test_path, run_dir, source)
    summary |= {
        "wall_seconds": time.perf_counter() - t_start,
    } | runtime()
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def fold_indices(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) of each of k folds (D2L 4.10.6, `get_k_fold_data`).

    The rows are shuffled with the seed first (the book takes contiguous slices, which
    would validate each fold on a range the others never saw if the file were sorted). Every
    fold validates n // k rows; the n % k rows left over train in every fold (the book leaves
    them out), so all folds have the same shapes.
    """
    order = np.random.default_rng([seed, 4_10]).permutation(n)
    size = n // k
    parts = [order[i * size : (i + 1) * size] for i in range(k)]
    rest = order[k * size :]
    return [(np.concatenate([*parts[:i], *parts[i + 1 :], rest]), parts[i]) for i in range(k)]


def _pad(x: np.ndarray, width: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, width - x.shape[1])))


def _check(cfg: Config, source: str) -> None:
    if not isinstance(cfg.data, CSVData):
        raise ConfigError(f"{source}: data.name: kaggle_house reads a CSV table; expected csv, found '{cfg.data.name}'")
    if cfg.data.val_file is not None:
        raise ConfigError(f"{source}: data.val_file: kaggle_house validates by k-fold splits of data.file; remove val_file")
    if LOSSES[cfg.loss.name].classify:
        raise ConfigError(
            f"{source}: loss.name: kaggle_house regresses prices; expected squared_error or mse, found '{cfg.loss.name}'"
        )


def log_rmse_metric(log_target: bool) -> Metric:
    """The log-RMSE as an evaluation metric: per example (log y_hat - log y)^2, averaged, then
    the root (`log_rmse`)."""

    def squared_log_error(pred: jax.Array, y: jax.Array) -> jax.Array:
        if not log_target:
            pred, y = jnp.log(jnp.clip(pred, 1.0, None)), jnp.log(y)
        return jnp.sum((pred - y.reshape(pred.shape)) ** 2, axis=-1)

    return Metric(squared_log_error, finish=jnp.sqrt)


def fit(cfg: Config, run_dir: Path, fold: int, splits: dict[str, tuple[np.ndarray, np.ndarray]], source: str) -> Fit:
    """Train a fresh model on `splits["train"]` for `trainer.epochs` epochs through the one
    training loop (in `run_dir`), scoring every split's log-RMSE after each epoch. `fold` (1..k,
    0 for the model on all rows) seeds the initialisation and the shuffles.

    Raises:
        ConfigError: a batch larger than a fold's training rows.
    """
    x, y = splits["train"]
    if problem := batch_too_large(cfg.data.batch_size, len(x), "a fold's training rows"):
        raise ConfigError(f"{source}: {problem}")
    arrays = {name: Arrays(jnp.asarray(a, jnp.float32), jnp.asarray(t.astype(np.float32)[:, None])) for name, (a, t) in splits.items()}
    data = Dataset(np.asarray(x, np.float32), y.astype(np.float32)[:, None], np.zeros((0, x.shape[1]), np.float32),
                   np.zeros((0, 1), np.float32), num_classes=None)
    sub = derive(cfg, {"name": run_dir.name, "trainer.progress": "none", "trainer.checkpoint_every": 0}, source)
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), fold)
    result = train(sub, run_dir, data=data, key=key, plot=False, splits=arrays,
                   eval_metrics={"log_rmse": log_rmse_metric(cfg.data.log_target)})
    rows = [{"fold": fold, "epoch": r["epoch"]} | {k: r[k] for k in r if k.endswith("/log_rmse")} for r in result.rows]
    state, model = result.state, result.setup.model
    predict = lambda x: inference.predict(model, state.params, state.model_state, np.asarray(x, np.float32))  # noqa: E731
    return Fit(rows, predict, result.summary["train_seconds"], result.summary["compile_seconds"])


def predict_test(
    cfg: Config, features: pd.DataFrame, y: np.ndarray, path: Path, test_path: Path, run_dir: Path, source: str
) -> dict[str, Any]:
    """Train on every row of `path` (in `run_dir/all`), price the rows of `test_path` and write
    `Id,<target>` to `run_dir/submission.csv` (D2L 4.10.8)."""
    import pandas as pd

    out = run_dir / "submission.csv"
    data = cfg.data
    test = tabular.read_table(test_path)
    if "Id" not in test.columns:
        raise DataError(f"{test_path}: has no Id column for submission.csv; {tabular.describe_columns(test)}")
    pre = tabular.Preprocessor.fit(features)
    x, x_test = pre.transform(features, str(path)), pre.transform(test, str(test_path))  # extra columns are ignored
    result = fit(cfg, run_dir / "all", 0, {"train": (x, y)}, source)
    pred = result.predict(x_test)[:, 0].astype(np.float64)
    prices = np.exp(pred) if data.log_target else pred
    if not np.all(np.isfinite(prices)):
        raise TrainingDiverged(f"the model trained on all rows predicts non-finite prices for {test_path}")
    submission = pd.DataFrame({"Id": test["Id"], data.target: prices})
    disk.write_atomic(out, submission.to_csv(index=False, float_format="%.2f"))
    return {
        "all/train/log_rmse": result.rows[-1]["train/log_rmse"],
        "all/compile_seconds": result.compile_seconds,
        "all/train_seconds": result.seconds,
        "submission": out.name,
        "test_file": str(test_path),
        "test_rows": len(test),
    }


def plot_folds(path: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    """Train (solid) and valid (dashed) log-RMSE against epoch, one colour per fold, on a log
    axis as the book's `d2l.plot(..., yscale='log')`."""
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    df = pd.DataFrame(rows)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for i, (fold, curve) in enumerate(df.groupby("fold", sort=False)):
        for split, style in (("train", "-"), ("val", "--")):
            label = f"fold {fold} {split}"
            ax.plot(curve["epoch"], curve[f"{split}/log_rmse"], style, color=f"C{i % 10}", label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("log-RMSE")
    if (df[["train/log_rmse", "val/log_rmse"]] > 0).all().all():
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", ncol=2)
    if title:
        ax.set_title(title)
    plots.write_figure(path, fig)
