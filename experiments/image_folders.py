"""The Kaggle image-folder workflow (D2L 13.13-13.14): split, train, predict a test folder into submission.csv.

`kaggle_images` takes a competition's layout (`train/<id>.png`, `trainLabels.csv`, `test/<id>.png`,
as Kaggle's CIFAR-10), reorganises it into class folders (`core.data.kaggle`, the book's
`reorg_cifar10_data`), trains on `train` and reports the accuracy on `valid` (D2L 13.13.5),
trains a fresh model on `train_valid` (every labelled image), classifies `test/unknown` with it and
writes `submission.csv` (id,label) into the run directory (D2L 13.13.7). Both models train through
the one training loop (`core.training.train`), each in its own sub-run directory, with the
config's data section (size, channels, normalisation, augmentation) pointed at the new folders.

Writes config.yaml, train_valid_test/ (hard links to the Kaggle files), train/ and train_valid/
(the two runs, each with its checkpoint, so `dlrun predict RUN/train_valid --images DIR` works),
metrics.csv (both runs' epochs, by `stage`), submission.csv and summary.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, ConfigError, Section, derive, validate_options
from dlrun.core.config.image_folder import ImageFolderData
from dlrun.core.data import load_dataset
from dlrun.core.data.image_folder import warn_left_out
from dlrun.core.data.kaggle import id_order, make_fashion_mnist_kaggle, read_csv_labels, reorganise
from dlrun.core.report import outputs
from dlrun.core.training.classify import classify_files
from dlrun.core.training.summary import runtime
from dlrun.core.training.train import train


class KaggleImagesOptions(Section):
    """The keys beside `experiment.name: kaggle_images`; the training settings are the config's."""

    dir: str | None = Field(None, description="the Kaggle folder: train/<id>.png, trainLabels.csv, test/<id>.png")
    make: Literal["fashion_mnist"] | None = Field(None, description="without dir: write such a folder from this data set "
                                                  "(once, into the data cache)")
    make_train: int = Field(5000, gt=0, description="make: labelled training images")
    make_test: int = Field(1000, gt=0, description="make: test images (their answers go to testLabels.csv)")
    valid_ratio: float = Field(0.1, gt=0, lt=1, description="per class, this share of the smallest class validates")


def run(cfg: Config, run_dir: str | Path, source: str = "config") -> dict[str, Any]:
    """Reorganise, train on train (scored on valid), train on train_valid, write submission.csv."""
    opts = validate_options(KaggleImagesOptions, cfg, source)
    if not isinstance(cfg.data, ImageFolderData):
        raise ConfigError(f"{source}: data.name: kaggle_images reads class folders; expected image_folder, "
                          f"found '{cfg.data.name}'")
    if opts.dir is None and opts.make is None:
        raise ConfigError(f"{source}: experiment.dir: give the Kaggle folder (train/, trainLabels.csv, test/) "
                          "or experiment.make: fashion_mnist")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    kaggle_dir = Path(opts.dir).expanduser() if opts.dir else make_fashion_mnist_kaggle(opts.make_train, opts.make_test)
    layout = reorganise(kaggle_dir, opts.valid_ratio, run_dir / "train_valid_test")

    stages = {"train": {"data.valid": "valid"}, "train_valid": {"data.valid": None}}
    results, rows = {}, []
    for stage, changes in stages.items():
        sub = derive(cfg, {"name": stage, "data.dir": str(layout.root), "data.make": None, "data.train": stage,
                           **changes, "trainer.checkpoint_every": 0}, source)
        data = load_dataset(sub.data, sub.seed)
        results[stage] = (train(sub, run_dir / stage, data=data), data, sub)
        rows += [{"stage": stage, **row} for row in results[stage][0].rows]
        outputs.write_metrics(run_dir / "metrics.csv", rows)

    result, data, sub = results["train_valid"]
    test_paths = sorted((layout.root / "test" / "unknown").iterdir(), key=lambda p: id_order(p.name))
    state = result.state
    found = classify_files(result.setup.model, state.params, state.model_state, test_paths, sub.data,
                           data.input_shape, data.label_names)
    warn_left_out(found.bad)
    ids = [p.name.split(".")[0] for p in found.paths]
    disk.write_atomic(run_dir / "submission.csv", "id,label\n" + "".join(f"{i},{label}\n" for i, label in zip(ids, found.labels)))

    scored = results["train"][0].summary
    summary: dict[str, Any] = {
        "val/acc": scored.get("val/acc"), "val/loss": scored.get("val/loss"),
        "train/acc": scored.get("train/acc"), "train_valid/train/acc": result.summary.get("train/acc"),
        "n_valid_per_label": layout.n_valid_per_label, "classes": list(layout.classes),
        "num_train": results["train"][1].num_train, "num_valid": len(results["train"][1].y_val),
        "num_train_valid": data.num_train, "num_test": len(layout.test_ids), "test_left_out": len(found.bad),
        "kaggle_dir": str(kaggle_dir), "submission": "submission.csv", "epochs": cfg.trainer.epochs,
    }
    summary |= submission_accuracy(kaggle_dir / "testLabels.csv", ids, found.labels)
    summary |= {
        "train_seconds": sum(r.summary.get("train_seconds", 0.0) for r, _, _ in results.values()),
        "wall_seconds": time.perf_counter() - t_start,
    } | runtime()
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def submission_accuracy(answers: Path, ids: list[str], labels: tuple[str, ...]) -> dict[str, Any]:
    """The submission's accuracy against `testLabels.csv` where there is one (the stand-in
    layout writes it; Kaggle keeps CIFAR-10's to itself)."""
    if not answers.is_file() or not ids:
        return {}
    truth = read_csv_labels(answers)
    known = [(truth[i], label) for i, label in zip(ids, labels) if i in truth]
    return {"test/acc": float(np.mean([t == p for t, p in known]))} if known else {}


# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {"kaggle_images": (run, KaggleImagesOptions, ("val/acc", "test/acc"))}
