"""`dlrun predict RUN --images DIR`: every image of a folder classified by a finished run,
checked against the run's softmax regression computed in numpy from its params.npz."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dlrun.cli.main import app

from .conftest import CONFIGS

LEVELS = {"bright": 200, "dark": 40}


def noisy(path: Path, level: int, side: int, rng, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(rng.normal(level, 20, (side, side)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A softmax regression on 8x8 grey images of two brightness classes, two epochs."""
    tmp = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("valid", 6)):
        for name, level in LEVELS.items():
            for i in range(n):
                noisy(tmp / "pngs" / split / name / f"{i}.png", level, 10, rng)
    out = tmp / "run"
    result = CliRunner().invoke(app, [
        "train", str(CONFIGS / "image_folder.yaml"), "--set", f"data.dir={tmp / 'pngs'}", "--set", "data.resize=8",
        "--set", "data.augment={}", "--set", "model={name: softmax_regression}", "--set", "optimizer={name: sgd, lr: 0.5}",
        "--set", "trainer.epochs=2", "--set", "data.batch_size=10", "--set", "trainer.progress=none", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def reference(run: Path, path: Path) -> np.ndarray:
    """The class probabilities of one file: Pillow's grey, bilinear 8x8, then softmax(x W + b)."""
    params = dict(np.load(run / "params.npz"))
    w = next(v for k, v in params.items() if v.ndim == 2)
    b = next(v for k, v in params.items() if v.ndim == 1)
    with Image.open(path) as image:
        x = np.asarray(image.convert("L").resize((8, 8), Image.BILINEAR), np.float64).reshape(-1) / 255
    logits = x @ w + b
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_every_image_is_classified_sorted_and_bad_files_named(trained, tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "unlabelled"
    noisy(folder / "b.png", 200, 16, rng, "RGB")  # another size and mode: read as the run's data
    noisy(folder / "a.jpg", 40, 5, rng)
    noisy(folder / "sub" / "c.png", 40, 8, rng)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, ["predict", str(trained), "--images", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    assert [Path(p).name for p, _, _ in lines] == ["a.jpg", "b.png", "c.png"]  # sorted paths; sub/ included
    assert [label for _, label, _ in lines] == ["dark", "bright", "dark"]
    for path, label, probability in lines:
        p = reference(trained, Path(path))
        assert ("bright", "dark")[int(p.argmax())] == label
        assert float(probability) == pytest.approx(p.max(), abs=1e-4)
    assert "broken.png" in result.stderr and "skipped" in result.stderr
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label", "probability"]
    assert [(r[0], r[1]) for r in rows[1:]] == [(p, label) for p, label, _ in lines]


def test_a_folder_without_images_and_misplaced_options_fail(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["predict", str(trained), "--images", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no image could be read" in result.output
    result = CliRunner().invoke(app, ["predict", str(trained), "--images", str(tmp_path / "absent")])
    assert result.exit_code == 2 and "not a directory" in result.output
    result = CliRunner().invoke(app, ["predict", str(trained), "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "--out goes with --images" in result.output


def test_a_model_that_takes_no_images_is_refused(tmp_path):
    out = tmp_path / "linreg"
    result = CliRunner().invoke(app, ["train", str(CONFIGS / "linreg.yaml"), "--set", "trainer.epochs=1",
                                      "--set", "trainer.progress=none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (tmp_path / "imgs").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "imgs" / "x.png")
    result = CliRunner().invoke(app, ["predict", str(out), "--images", str(tmp_path / "imgs")])
    assert result.exit_code == 2 and "regression run" in result.output
