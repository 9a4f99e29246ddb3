"""D2L 13.13-13.14: labelled images in class folders (`data.name: image_folder`), read at one
size and mode whatever their files hold, and a tiny run trained on one through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import ConfigError, load_config
from dlrun.core.config.image_folder import ImageFolderData
from dlrun.core.data import load_dataset
from dlrun.core.errors import DataError

from .conftest import CONFIGS, write_fake_fashion_mnist


def luma(rgb) -> float:
    """ITU-R 601-2 luma, the grey Pillow's convert("L") computes, in [0, 1]."""
    r, g, b = rgb
    return (r * 299 + g * 587 + b * 114) / 1000 / 255


def solid(path: Path, mode: str, size: tuple[int, int], colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Two classes of solid images in several sizes, modes and formats, and a damaged file."""
    root = tmp_path / "folder"
    solid(root / "train" / "red" / "a.png", "RGB", (40, 30), (200, 10, 10))
    solid(root / "train" / "red" / "b.jpg", "RGB", (9, 17), (200, 10, 10))
    solid(root / "train" / "red" / "c.png", "RGBA", (12, 12), (200, 10, 10, 255))
    solid(root / "train" / "grey" / "a.png", "L", (5, 50), 90)
    solid(root / "train" / "grey" / "nested" / "b.png", "L", (64, 64), 90)
    (root / "train" / "grey" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "train" / "grey" / "notes.txt").write_text("not an image name, not read")
    solid(root / "valid" / "red" / "v.png", "P", (8, 8), 3)  # a palette image: converted like any other
    return root


def folder_cfg(root: Path, **changes) -> ImageFolderData:
    return ImageFolderData(dir=str(root), resize=6, **changes)


def test_mixed_sizes_and_modes_are_read_at_one_size_and_mode(mixed_folder, capsys):
    data = load_dataset(folder_cfg(mixed_folder, channels=1), 0)
    assert data.label_names == ("grey", "red") and data.num_classes == 2
    assert data.x_train.shape == (5, 6, 6, 1) and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.y_train, [0, 0, 1, 1, 1])  # sorted classes, sorted files
    expected = [90 / 255, 90 / 255] + [luma((200, 10, 10))] * 3
    # a solid image stays solid under any resize; JPEG's compression moves it by a few levels
    np.testing.assert_allclose(data.x_train.reshape(5, -1).mean(1), expected, atol=4 / 255)
    assert data.x_val.shape == (1, 6, 6, 1) and list(data.y_val) == [1]
    err = capsys.readouterr().err
    assert "1 file(s)" in err and str(mixed_folder / "train" / "grey" / "broken.png") in err
    assert data.meta["left_out"] == [str(mixed_folder / "train" / "grey" / "broken.png")]


def test_rgb_reads_grey_files_as_three_equal_channels(mixed_folder):
    data = load_dataset(folder_cfg(mixed_folder, channels=3), 0)
    assert data.x_train.shape == (5, 6, 6, 3)
    np.testing.assert_allclose(data.x_train[0], 90 / 255, atol=1e-6)  # a grey file
    np.testing.assert_allclose(data.x_train[2].reshape(-1, 3).mean(0), np.array([200, 10, 10]) / 255, atol=1e-6)


def test_normalisation_is_per_channel(mixed_folder):
    data = load_dataset(folder_cfg(mixed_folder, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.1, 0.5)), 0)
    np.testing.assert_allclose(data.x_train[2].reshape(-1, 3).mean(0),
                               (np.array([200, 10, 10]) / 255 - [0.5, 0.4, 0.3]) / [0.2, 0.1, 0.5], atol=1e-5)


def test_a_validation_class_the_training_folder_lacks_is_named(mixed_folder):
    solid(mixed_folder / "valid" / "blue" / "x.png", "RGB", (4, 4), (0, 0, 255))
    with pytest.raises(ConfigError, match="blue.*not among the training classes"):
        load_dataset(folder_cfg(mixed_folder), 0)


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "train").rename(root / "elsewhere"), "train: no such folder"),
    (lambda root: (root / "train" / "empty").mkdir(), "empty: an empty class folder"),
    (lambda root: (root / "valid").rename(root / "elsewhere"), "valid: no such folder"),
])  # fmt: skip
def test_missing_and_empty_folders_are_errors_naming_the_path(mixed_folder, damage, message):
    damage(mixed_folder)
    with pytest.raises(DataError, match=message):
        load_dataset(folder_cfg(mixed_folder), 0)


def test_no_validation_folder_when_asked(mixed_folder):
    data = load_dataset(folder_cfg(mixed_folder, valid=None), 0)
    assert data.x_val.shape == (0, 6, 6, 1) and data.num_train == 5


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {name: image_folder, dir: x, channels: 3, mean: [0.5, 0.5, 0.5]}\n")
    with pytest.raises(ConfigError, match="mean and std go together"):
        load_config(path)
    path.write_text("data: {name: image_folder, dir: x, channels: 3, mean: [0.5], std: [0.2]}\n")
    with pytest.raises(ConfigError, match="mean: expected 3 value"):
        load_config(path)
    path.write_text("data: {name: image_folder, dir: x, mean: [0.5], std: [0.2], augment: {brightness: 0.2}}\n")
    with pytest.raises(ConfigError, match="augment.brightness works on images in"):
        load_config(path)
    with pytest.raises(ConfigError, match="data.dir"):
        load_dataset(ImageFolderData(), 0)  # neither a folder nor one to make


def test_make_writes_fashion_mnist_pngs_once(tmp_path, monkeypatch):
    """The made folder holds the first images of each class, byte for byte (PNG is lossless)."""
    from dlrun.core.data.idx import read_idx

    fake = write_fake_fashion_mnist(tmp_path / "fmnist", n_train=300, n_val=100)
    monkeypatch.setenv("DLRUN_DATA_DIR", str(fake))
    cfg = ImageFolderData(make="fashion_mnist", make_train=3, make_valid=2, resize=28)
    data = load_dataset(cfg, 0)
    images, labels = read_idx(fake / "train-images-idx3-ubyte.gz"), read_idx(fake / "train-labels-idx1-ubyte.gz")
    names = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
    assert data.label_names == tuple(sorted(names)) and data.num_train == 30 and len(data.y_val) == 20
    for c, name in enumerate(names):
        first = np.flatnonzero(labels == c)[:3]  # the reference: the first three of class c, in file order
        got = data.x_train[data.y_train == data.label_names.index(name)][..., 0]
        np.testing.assert_array_equal(np.round(got * 255).astype(np.uint8), images[np.sort(first)])
    made = Path(data.meta["dir"])
    stamp = (made / "train").stat().st_mtime_ns
    assert load_dataset(cfg, 0).num_train == 30 and (made / "train").stat().st_mtime_ns == stamp  # reused
    assert not [p for p in made.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_tiny_run_on_a_folder_through_the_cli(tmp_path):
    """Dark images against bright ones: the shipped config with a softmax regression learns them."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pngs"
    for split, n in (("train", 40), ("valid", 10)):
        for name, level in (("dark", 40), ("bright", 200)):
            for i in range(n):
                pixels = np.clip(rng.normal(level, 20, (int(rng.integers(6, 12)),) * 2), 0, 255).astype(np.uint8)
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", str(CONFIGS / "image_folder.yaml"), "--set", f"data.dir={root}", "--set", "data.resize=8",
        "--set", "model={name: softmax_regression}", "--set", "optimizer={name: sgd, lr: 0.5}", "--set", "trainer.epochs=3",
        "--set", "data.batch_size=10", "--set", "trainer.progress=none", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val/acc"] == 1.0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4  # a header and three epochs
