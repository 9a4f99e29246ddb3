"""Fine-tuning (D2L 13.2): a model started from another run's parameters against the same model
trained from scratch, on a small target task.

The book's recipe: copy every parameter of a model pretrained on a large source task (ImageNet)
but its output layer, give the target's classes a new output layer (Xavier-initialised), and
train the body at the base learning rate and the new head at 10 times it; the model from
scratch trains at 10 times the base rate everywhere. Here each run is a sub-run of the one
training loop in the run directory: `pretrain/` (the source task, unless `pretrained` names a
finished run or a torchvision weights file), `fine_tuned/` (`init_from` with the head excluded,
`optimizer.groups` for its learning rate), `scratch/`, and with `frozen` a `frozen/` run whose
copied body does not train at all (as `requires_grad=False` would; its batch-norm statistics
still follow the target's batches in training).

The source task is Fashion-MNIST's training images of `source_classes`; with `make_target` the
target is an image folder written from the test images of other classes (`target/`), few per
class, read through `data` (an `image_folder` section) as any image folder is. Writes
config.yaml, results.csv (one row per run), metrics.csv (every run's epochs), val_acc.png and
summary.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from pydantic import Field, model_validator

from dlrun.core import disk
from dlrun.core.config import Config, ConfigError, Section, derive, validate_options
from dlrun.core.config.data import FashionMNISTData
from dlrun.core.config.image_folder import ImageFolderData
from dlrun.core.data import Dataset, load_dataset
from dlrun.core.data.fashion_mnist import FASHION_MNIST_LABELS, fashion_mnist
from dlrun.core.data.image_folder import write_pngs
from dlrun.core.nn import torchvision_resnet
from dlrun.core.report import outputs, plots
from dlrun.core.training.train import train

BOOK = {"fine_tuned/val/acc": 0.94, "scratch/val/acc": (0.84, 0.86)}  # D2L 13.2: hotdog test accuracy after 5 epochs
VARIANTS = ("fine_tuned", "scratch", "frozen")


class TargetFolder(Section):
    """An image folder written from Fashion-MNIST's test images: per class the first
    `train_per_class` images train and the next `valid_per_class` validate."""

    classes: tuple[int, ...] = Field((5, 6, 7, 8, 9), min_length=2, description="Fashion-MNIST labels (0-9)")
    train_per_class: int = Field(50, gt=0)
    valid_per_class: int = Field(100, gt=0)


class FineTuningOptions(Section):
    """The keys beside `experiment.name: fine_tuning`."""

    pretrained: str | None = Field(None, description="a finished run's directory, or a torchvision resnet18 state dict "
                                   "(.pth, .pt, .npz); null: pretrain on the source task first")
    source_classes: tuple[int, ...] = Field((0, 1, 2, 3, 4), min_length=2, description="pretraining: Fashion-MNIST labels")
    source_num_train: int | None = Field(None, gt=0, description="pretraining: the first this many training images of them")
    source_num_val: int = Field(1000, gt=0, description="pretraining: test images of them that validate")
    source_dir: str | None = Field(None, description="Fashion-MNIST's folder (default: where data.name: fashion_mnist looks)")
    pretrain: dict[str, Any] = Field(default_factory=dict, description="config changes of the pretraining run "
                                     "(dotted keys: trainer.epochs, optimizer.lr)")
    make_target: TargetFolder | None = Field(None, description="write the target image folder from Fashion-MNIST")
    head: str = Field("dense0/*", min_length=1, description="the output layer's parameter paths (torchvision_resnet18: fc/*)")
    head_lr_scale: float = Field(10.0, gt=0, description="the head's learning rate over optimizer.lr (the book's 10)")
    scratch_lr_scale: float = Field(10.0, gt=0, description="the scratch model's learning rate over optimizer.lr (the book's 10)")
    frozen: bool = Field(False, description="also train the head alone on the frozen pretrained body")

    @model_validator(mode="after")
    def _different_tasks(self) -> FineTuningOptions:
        labels = set(self.source_classes) | set(self.make_target.classes if self.make_target else ())
        if any(not 0 <= c <= 9 for c in labels):
            raise ValueError(f"Fashion-MNIST's labels are 0-9, found {sorted(labels)}")
        if self.make_target and set(self.source_classes) & set(self.make_target.classes):
            raise ValueError(f"source_classes and make_target.classes share {sorted(set(self.source_classes) & set(self.make_target.classes))}: "
                             "the target must be another task")
        return self


def run(cfg: Config, run_dir: str | Path, source: str = "config") -> dict[str, Any]:
    """Pretrain (or take a pretrained run), then fine-tune, train from scratch (and with a frozen body) on the target."""
    opts = validate_options(FineTuningOptions, cfg, source)
    run_dir = Path(run_dir)
    t_start = time.perf_counter()
    if not isinstance(cfg.data, ImageFolderData):
        raise ConfigError(f"{source}: data.name: fine_tuning trains on an image folder; expected image_folder, found '{cfg.data.name}'")
    given = given_pretrained(opts, source)  # a wrong path fails before anything is written
    if opts.make_target is not None:
        target_dir = write_target(run_dir / "target", opts.make_target, opts.source_dir)
        cfg = derive(cfg, {"data.dir": str(target_dir), "data.make": None}, source)
    target = load_dataset(cfg.data, cfg.seed)  # read once, for every run

    results: dict[str, dict[str, Any]] = {}
    pretrained = pretrained_run(cfg, opts, given, run_dir, source, results)
    for variant in VARIANTS:
        if variant == "frozen" and not opts.frozen:
            continue
        sub = derive(cfg, {"name": variant, **quiet(), **variant_changes(cfg, opts, variant, pretrained)}, source)
        results[variant] = train(sub, run_dir / variant, data=target, plot=False)

    summary = report(run_dir, results, opts)
    summary |= {"pretrained": str(pretrained), "target_classes": list(target.label_names or ()),
                "num_target_train": target.num_train, "num_target_val": len(target.y_val),
                "wall_seconds": time.perf_counter() - t_start, "device": str(jax.devices()[0].device_kind)}
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def quiet() -> dict[str, Any]:
    return {"trainer.progress": "none", "trainer.checkpoint_every": 0}


def variant_changes(cfg: Config, opts: FineTuningOptions, variant: str, pretrained: Path) -> dict[str, Any]:
    """The config changes of one run on the target (D2L 13.2's `train_fine_tuning`): the body
    copied from `pretrained` and the head afresh at `head_lr_scale` x lr; or the whole model
    from scratch at `scratch_lr_scale` x lr; or the copied body frozen."""
    if variant == "scratch":
        return {"optimizer.lr": cfg.optimizer.lr * opts.scratch_lr_scale, "init_from": None}
    head = {"params": opts.head, "lr_scale": opts.head_lr_scale}
    body = [{"params": "*", "freeze": True}] if variant == "frozen" else []  # the first matching group wins: the head trains
    return {"init_from": {"run": str(pretrained), "exclude": [opts.head]}, "optimizer.groups": [head, *body]}


def given_pretrained(opts: FineTuningOptions, source: str) -> Path | None:
    """`opts.pretrained` checked: a state dict file or a directory (None: pretrain here).

    Raises:
        ConfigError: a path that is neither.
    """
    if opts.pretrained is None:
        return None
    path = Path(opts.pretrained).expanduser()
    if path.suffix in torchvision_resnet.WEIGHT_SUFFIXES and not path.is_file():
        torchvision_resnet.read_state_dict(path, f"{source}: experiment.pretrained")  # its message: how to make the file
    if path.suffix not in torchvision_resnet.WEIGHT_SUFFIXES and not path.is_dir():
        raise ConfigError(f"{source}: experiment.pretrained: {path} is neither a run directory nor a state dict "
                          f"file ({', '.join(torchvision_resnet.WEIGHT_SUFFIXES)})")
    return path


def pretrained_run(cfg: Config, opts: FineTuningOptions, given: Path | None, run_dir: Path, source: str,
                   results: dict) -> Path:
    """The run whose parameters the target's runs start from: `given` (a weights file is
    written as one, `pretrained/`), or `pretrain/` trained here on the source classes."""
    if given is not None and given.suffix in torchvision_resnet.WEIGHT_SUFFIXES:
        return torchvision_resnet.write_as_run(given, run_dir / "pretrained", f"{source}: experiment.pretrained")
    if given is not None:
        return given
    data = source_task(opts)
    sub = derive(cfg, {"name": "pretrain", **quiet(), "init_from": None, **opts.pretrain}, f"{source}: experiment.pretrain")
    results["pretrain"] = train(sub, run_dir / "pretrain", data=data, plot=False)
    return run_dir / "pretrain"


def _fashion_mnist(directory: str | None) -> Dataset:
    return fashion_mnist(FashionMNISTData(dir=directory), 0)


def _relabelled(y: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    return np.searchsorted(np.asarray(sorted(classes)), y).astype(np.int32)


def source_task(opts: FineTuningOptions) -> Dataset:
    """Fashion-MNIST's training images of `source_classes` (labels 0..k-1 in their order), its
    test images of them validating."""
    full, classes = _fashion_mnist(opts.source_dir), tuple(sorted(opts.source_classes))
    train_rows = np.flatnonzero(np.isin(full.y_train, classes))[: opts.source_num_train]
    val_rows = np.flatnonzero(np.isin(full.y_val, classes))[: opts.source_num_val]
    return Dataset(full.x_train[train_rows], _relabelled(full.y_train[train_rows], classes),
                   full.x_val[val_rows], _relabelled(full.y_val[val_rows], classes), num_classes=len(classes),
                   label_names=tuple(FASHION_MNIST_LABELS[c] for c in classes))


def write_target(folder: Path, target: TargetFolder, source_dir: str | None) -> Path:
    """`folder/{train,valid}/<class>/<i>.png` from Fashion-MNIST's test images of `target.classes`
    (images no pretraining run sees), written once; the existing folder is reused."""
    if (folder / "valid").is_dir():
        return folder
    full = _fashion_mnist(source_dir)
    images = np.round(full.x_val[..., 0] * 255).astype(np.uint8)
    for c in target.classes:
        rows = np.flatnonzero(full.y_val == c)
        name = FASHION_MNIST_LABELS[c].replace(" ", "_")
        if len(rows) < target.train_per_class + target.valid_per_class:
            raise ConfigError(f"experiment.make_target: class {name} has {len(rows)} test images; "
                              f"{target.train_per_class} + {target.valid_per_class} were asked for")
        picked = {"train": rows[: target.train_per_class],
                  "valid": rows[target.train_per_class : target.train_per_class + target.valid_per_class]}
        for split, idx in picked.items():
            write_pngs(images[idx], [folder / split / name / f"{i}.png" for i in idx])
    return folder


def report(run_dir: Path, results: dict[str, Any], opts: FineTuningOptions) -> dict[str, Any]:
    """results.csv, metrics.csv and val_acc.png of the runs; the summary's numbers."""
    table, rows, summary = [], [], {}
    for name, result in results.items():
        last = result.rows[-1]
        line = {"run": name, "epochs": last["epoch"], **{k: last[k] for k in ("train/loss", "train/acc", "val/loss", "val/acc") if k in last},
                "lr": result.setup.cfg.optimizer.lr, "train_seconds": result.summary["train_seconds"]}
        table.append(line)
        rows += [{"run": name, **{k: v for k, v in r.items() if k == "epoch" or "/" in k}} for r in result.rows]
        summary |= {f"{name}/{k}": v for k, v in line.items() if "/" in k} | {f"{name}/train_seconds": line["train_seconds"]}
    outputs.write_metrics(run_dir / "results.csv", table)
    outputs.write_metrics(run_dir / "metrics.csv", rows)
    plot_val_acc(run_dir / "val_acc.png", {n: r.rows for n, r in results.items() if n != "pretrain"})
    summary["fine_tuned_minus_scratch"] = summary["fine_tuned/val/acc"] - summary["scratch/val/acc"]
    if opts.frozen:
        summary["frozen_minus_scratch"] = summary["frozen/val/acc"] - summary["scratch/val/acc"]
    summary["book"] = {"hotdog fine_tuned/val/acc": BOOK["fine_tuned/val/acc"], "hotdog scratch/val/acc": list(BOOK["scratch/val/acc"])}
    return summary


def plot_val_acc(path: Path, curves: dict[str, list[dict[str, Any]]],
                 title: str = "D2L 13.2: fine-tuned vs from scratch") -> None:
    """Validation accuracy against epoch, one line per run on the target."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    for name, rows in curves.items():
        ax.plot([r["epoch"] for r in rows], [r["val/acc"] for r in rows], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val acc")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    plots.write_figure(path, fig)


# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {
    "fine_tuning": (run, FineTuningOptions, ("fine_tuned/val/acc", "scratch/val/acc", "frozen/val/acc",
                                             "fine_tuned_minus_scratch", "frozen_minus_scratch")),
}
