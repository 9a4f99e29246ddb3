"""D2L 13.13: the Kaggle CIFAR-10 layout reorganised into class folders, checked against a
literal port of the book's functions, and the `kaggle_images` experiment's submission.csv."""

import collections
import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlrun.core.config import load_config
from dlrun.core.data.kaggle import read_csv_labels, reorganise
from dlrun.core.errors import DataError
from dlrun.experiments import run_config

from .conftest import CONFIGS

# ---------------------------------------------------------------- the book's code (D2L 13.13.1)
# A port line for line; the one change: the training files in the order of their numeric ids
# (the book's os.listdir order is the file system's, so its split is not reproducible).


def book_read_csv_labels(fname):
    with open(fname, "r") as f:
        lines = f.readlines()[1:]
    tokens = [l.rstrip().split(",") for l in lines]
    return dict(((name, label) for name, label in tokens))  # noqa: C402 - as the book writes it


def book_copyfile(filename, target_dir):
    os.makedirs(target_dir, exist_ok=True)
    shutil.copy(filename, target_dir)


def book_reorg_train_valid(data_dir, labels, valid_ratio):
    n = collections.Counter(labels.values()).most_common()[-1][1]
    n_valid_per_label = max(1, math.floor(n * valid_ratio))
    label_count = {}
    for train_file in sorted(os.listdir(os.path.join(data_dir, "train")), key=lambda f: int(f.split(".")[0])):
        label = labels[train_file.split(".")[0]]
        fname = os.path.join(data_dir, "train", train_file)
        book_copyfile(fname, os.path.join(data_dir, "train_valid_test", "train_valid", label))
        if label not in label_count or label_count[label] < n_valid_per_label:
            book_copyfile(fname, os.path.join(data_dir, "train_valid_test", "valid", label))
            label_count[label] = label_count.get(label, 0) + 1
        else:
            book_copyfile(fname, os.path.join(data_dir, "train_valid_test", "train", label))
    return n_valid_per_label


def book_reorg_test(data_dir):
    for test_file in os.listdir(os.path.join(data_dir, "test")):
        book_copyfile(os.path.join(data_dir, "test", test_file), os.path.join(data_dir, "train_valid_test", "test", "unknown"))


# ---------------------------------------------------------------- a tiny layout


def kaggle_layout(root: Path, counts: dict[str, int], num_test: int, seed: int = 0) -> Path:
    """train/<id>.png with labels in a shuffled order, trainLabels.csv, test/<id>.png and
    testLabels.csv; class c's images are bright in rows 2c, 2c + 1 of 8 (so a classifier can learn them;
    the left-right flip of the stand-in's augmentation keeps them)."""
    rng = np.random.default_rng(seed)
    names = sorted(counts)
    labels = rng.permutation([name for name in names for _ in range(counts[name])])
    test = rng.choice(names, num_test)
    for folder, split in (("train", labels), ("test", test)):
        (root / folder).mkdir(parents=True)
        for i, name in enumerate(split, start=1):
            pixels = rng.integers(0, 60, (8, 8))
            pixels[2 * names.index(name) : 2 * names.index(name) + 2] += 180
            Image.fromarray(pixels.astype(np.uint8)).save(root / folder / f"{i}.png")
        rows = ["id,label"] + [f"{i},{name}" for i, name in enumerate(split, start=1)]
        (root / f"{folder}Labels.csv").write_text("\n".join(rows) + "\n")
    return root


def tree(root: Path) -> dict[str, set[str]]:
    """Each folder under `root` (relative) -> the names of the files in it."""
    out = collections.defaultdict(set)
    for path in root.rglob("*"):
        if path.is_file():
            out[str(path.parent.relative_to(root))].add(path.name)
    return dict(out)


@pytest.mark.parametrize("valid_ratio", [0.1, 0.25, 0.5])
def test_reorganisation_matches_the_books_functions(tmp_path, valid_ratio):
    layout = kaggle_layout(tmp_path / "kaggle", {"cat": 7, "dog": 12, "frog": 9}, num_test=11)
    ours = reorganise(layout, valid_ratio, tmp_path / "ours")
    labels = book_read_csv_labels(layout / "trainLabels.csv")
    assert read_csv_labels(layout / "trainLabels.csv") == labels
    n = book_reorg_train_valid(str(layout), labels, valid_ratio)
    book_reorg_test(str(layout))
    assert ours.n_valid_per_label == n == max(1, math.floor(7 * valid_ratio))
    assert tree(ours.root) == tree(layout / "train_valid_test")
    assert ours.classes == ("cat", "dog", "frog")
    assert list(ours.test_ids) == [str(i) for i in range(1, 12)]  # numeric order: 2 before 10
    first = ours.root / "train_valid" / labels["1"] / "1.png"
    assert first.read_bytes() == (layout / "train" / "1.png").read_bytes()


def test_reorganising_again_replaces_the_old_tree(tmp_path):
    layout = kaggle_layout(tmp_path / "kaggle", {"a": 4, "b": 4}, num_test=2)
    out = tmp_path / "tvt"
    reorganise(layout, 0.5, out)
    (out / "train" / "a" / "stale.png").write_bytes(b"")
    reorganise(layout, 0.25, out)
    assert not (out / "train" / "a" / "stale.png").exists()
    assert len(list((out / "valid" / "a").iterdir())) == 1


def test_bad_layouts_are_named(tmp_path):
    layout = kaggle_layout(tmp_path / "kaggle", {"a": 3, "b": 3}, num_test=1)
    Image.new("L", (8, 8)).save(layout / "train" / "99.png")
    with pytest.raises(DataError, match=r"99.png: id 99 has no line in .*trainLabels.csv"):
        reorganise(layout, 0.1, tmp_path / "out")
    (layout / "trainLabels.csv").write_text("id,label\n1,a,extra\n")
    with pytest.raises(DataError, match=r"trainLabels.csv, line 2: expected id,label"):
        read_csv_labels(layout / "trainLabels.csv")
    shutil.rmtree(layout / "test")
    with pytest.raises(DataError, match="test: no such folder"):
        reorganise(layout, 0.1, tmp_path / "out")


def test_the_experiment_writes_a_submission(tmp_path):
    """The stand-in's config on a tiny layout, with a softmax regression: the submission has
    every test id in numeric order, and the levels are learnt well enough to label them."""
    layout = kaggle_layout(tmp_path / "kaggle", {"a": 20, "b": 24, "c": 30}, num_test=12, seed=1)
    cfg = load_config(CONFIGS / "kaggle_cifar10_cpu.yaml", [
        f"experiment.dir={layout}", "data.resize=8", "data.batch_size=8", "model={name: softmax_regression}",
        "optimizer={name: sgd, lr: 0.1}", "trainer.epochs=5", "trainer.progress=none"])  # fmt: skip
    out = tmp_path / "run"
    summary = run_config(cfg, out)
    with open(out / "submission.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "label"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, 13)]
    truth = read_csv_labels(layout / "testLabels.csv")
    right = np.mean([truth[i] == label for i, label in rows[1:]])
    assert right >= 0.9 and summary["test/acc"] == pytest.approx(right)
    assert summary["n_valid_per_label"] == 2 and summary["num_valid"] == 6 and summary["num_train"] == 68
    assert summary["num_train_valid"] == 74 and summary["val/acc"] >= 0.8
    for stage in ("train", "train_valid"):
        assert (out / stage / "checkpoints").is_dir() and (out / stage / "config.yaml").is_file()
    stages = {line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]}
    assert stages == {"train", "train_valid"}
    assert json.loads((out / "summary.json").read_text())["submission"] == "submission.csv"


def test_the_stand_in_layout_is_fashion_mnist_in_kaggle_form(tmp_path, monkeypatch):
    from dlrun.core.data.idx import read_idx
    from dlrun.core.data.kaggle import make_fashion_mnist_kaggle

    from .conftest import write_fake_fashion_mnist

    fake = write_fake_fashion_mnist(tmp_path / "fmnist", n_train=40, n_val=20)
    monkeypatch.setenv("DLRUN_DATA_DIR", str(fake))
    layout = make_fashion_mnist_kaggle(25, 7)
    names = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
    for folder, prefix, n in (("train", "train", 25), ("test", "t10k", 7)):
        images, labels = read_idx(fake / f"{prefix}-images-idx3-ubyte.gz"), read_idx(fake / f"{prefix}-labels-idx1-ubyte.gz")
        assert sorted(p.name for p in (layout / folder).iterdir()) == sorted(f"{i}.png" for i in range(1, n + 1))
        assert read_csv_labels(layout / f"{folder}Labels.csv") == {str(i + 1): names[c] for i, c in enumerate(labels[:n])}
        for i in (1, n):
            np.testing.assert_array_equal(np.asarray(Image.open(layout / folder / f"{i}.png")), images[i - 1])
    assert make_fashion_mnist_kaggle(25, 7) == layout  # made once, then reused


@pytest.mark.slow  # PyTorch and an 11M-parameter initialisation: about 13 s
def test_the_kaggle_config_has_the_books_resnet18():
    """configs/kaggle_cifar10.yaml's network has as many parameters as d2l.resnet18(10, 3) built
    in PyTorch (conv 3x3 64 stem, no max-pool; four stages of two residual blocks)."""
    pytest.importorskip("torch")
    from torch import nn

    from dlrun.core.data import Dataset
    from dlrun.core.training.setup import network_summary

    def residual(i, o, stride):
        return [nn.Conv2d(i, o, 3, stride, 1), nn.BatchNorm2d(o), nn.Conv2d(o, o, 3, 1, 1), nn.BatchNorm2d(o)] + (
            [nn.Conv2d(i, o, 1, stride)] if stride != 1 else [])

    layers = [nn.Conv2d(3, 64, 3, 1, 1), nn.BatchNorm2d(64)]
    for i, o, stride in ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)):
        layers += residual(i, o, stride) + residual(o, o, 1)
    book = sum(p.numel() for layer in [*layers, nn.Linear(512, 10)] for p in layer.parameters())
    images = np.zeros((200, 32, 32, 3), np.float32)
    data = Dataset(images, np.zeros(200, np.int32), images[:0], np.zeros(0, np.int32), num_classes=10)
    rows, shape = network_summary(load_config(CONFIGS / "kaggle_cifar10.yaml"), data, max_depth=1)
    assert shape == (32, 32, 3) and sum(r.params for r in rows) == book
