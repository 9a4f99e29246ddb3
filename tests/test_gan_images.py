"""GANs over images (D2L 17.2) and what a GAN run leaves: images read from a folder of any
size and mode (a bad file named and left out), Fashion-MNIST resized to [-1, 1], a DCGAN run
end to end with its per-epoch samples, and a GAN killed with SIGKILL resuming to the numbers
and samples of a run never stopped."""

import signal
import subprocess
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import load_config
from dlrun.core.data import load_dataset
from dlrun.core.data.images import read_images
from dlrun.core.report.plots import chosen_epochs
from dlrun.core.training.checkpoint import list_checkpoints

from .conftest import CONFIGS
from .test_reliability import DLRUN, metrics_without_seconds

runner = CliRunner()


def write_images(folder, count=12):
    """PNGs and a JPEG of other sizes and modes (RGB, grey, RGBA, palette), in sub-folders, and
    one file that only claims to be an image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P"]
    for i in range(count):
        sub = folder / f"kind{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        size = (20 + 3 * i, 24 + i)
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(modes[i % 4])
        image.save(sub / (f"sprite{i}.jpg" if i == 5 else f"sprite{i}.png"))
    (folder / "kind0" / "broken.png").write_bytes(b"not an image at all")
    return folder


def test_images_of_any_size_and_mode_are_read_at_one_size_and_a_bad_one_is_named(tmp_path):
    from PIL import Image

    folder = write_images(tmp_path / "imgs")
    Image.new("RGB", (50, 30), (255, 0, 128)).save(folder / "kind1" / "flat.png")
    paths = sorted(folder.rglob("*.png")) + sorted(folder.rglob("*.jpg"))
    for channels in (1, 3):
        found = read_images(paths, 16, channels)
        assert found.images.shape == (len(paths) - 1, 16, 16, channels) and found.images.dtype == np.float32
        assert 0.0 <= found.images.min() and found.images.max() <= 1.0
        assert [p.name for p, _ in found.bad] == ["broken.png"]
    flat = read_images([folder / "kind1" / "flat.png"], 8, 3).images[0]  # a constant colour stays that colour
    np.testing.assert_allclose(flat, np.broadcast_to(np.array([255, 0, 128]) / 255.0, (8, 8, 3)), atol=1e-6)
    grey = read_images([folder / "kind1" / "flat.png"], 8, 1).images[0, 0, 0, 0]
    assert grey == pytest.approx((0.299 * 255 + 0.587 * 0 + 0.114 * 128) / 255, abs=1 / 255)  # ITU-R 601 luma


def test_fashion_mnist_for_a_gan_is_resized_into_minus_one_one(fake_fmnist_dir):
    cfg = load_config(CONFIGS / "dcgan_cpu.yaml", [f"data.dir={fake_fmnist_dir}", "data.num_train=64", "data.batch_size=16"])
    data = load_dataset(cfg.data, cfg.seed)
    assert data.x_train.shape == (64, 32, 32, 1) and data.x_val.shape[0] == 0
    assert -1.0 <= data.x_train.min() < 0 < data.x_train.max() <= 1.0


def test_the_epochs_drawn_are_evenly_spread_with_the_first_and_last():
    samples = [(e, None) for e in range(1, 21)]
    picked = [e for e, _ in chosen_epochs(samples)]
    assert len(picked) == 8 and picked[0] == 1 and picked[-1] == 20 and picked == sorted(set(picked))
    assert [e for e, _ in chosen_epochs(samples[:5])] == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_a_dcgan_trains_on_a_folder_of_images_and_shows_its_samples_by_epoch(tmp_path):
    folder = write_images(tmp_path / "sprites", count=24)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(CONFIGS / "dcgan.yaml"), "--out", str(out), "--set", f"data.dir={folder}",
                                 "--set", "data.size=16", "--set", "data.batch_size=8", "--set", "model.generator_channels=4",
                                 "--set", "model.discriminator_channels=4", "--set", "model.latent_dim=8",
                                 "--set", "model.conv_impl=xla", "--set", "trainer.epochs=2", "--set", "trainer.progress=none"])
    assert result.exit_code == 0, result.output
    assert "broken.png: not an image" in result.output  # named, and the other 24 trained on
    import json

    import pandas as pd

    rows = pd.read_csv(out / "metrics.csv")
    assert list(rows["epoch"]) == [1, 2] and {"train/loss_D", "train/loss_G"} <= set(rows.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ln2_gap"] == pytest.approx(max(abs(rows["train/loss_D"].iloc[-1] - np.log(2)),
                                                   abs(rows["train/loss_G"].iloc[-1] - np.log(2))), rel=1e-6)
    shots = [np.load(out / "samples" / f"epoch_000{e}.npy") for e in (1, 2)]
    assert shots[0].shape == (16, 16, 16, 3) and np.abs(shots[0]).max() <= 1.0 and not np.array_equal(*shots)
    assert (out / "samples.png").stat().st_size > 0


@pytest.mark.slow
def test_a_gan_killed_with_sigkill_resumes_to_the_numbers_and_samples_of_one_never_stopped(tmp_path):
    args = ["--set", "data.num_train=4000", "--set", "trainer.epochs=8", "--set", "trainer.progress=plain",
            "--set", "trainer.loop=step"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    result = runner.invoke(app, ["train", str(CONFIGS / "gan_gaussian.yaml"), "--out", str(whole), *args])
    assert result.exit_code == 0, result.output
    proc = subprocess.Popen(DLRUN + ["train", str(CONFIGS / "gan_gaussian.yaml"), "--out", str(parts), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and len(list_checkpoints(parts / "checkpoints")) < 2:
        time.sleep(0.01)
    time.sleep(0.2)  # inside a later epoch
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run(DLRUN + ["train", "--resume", str(parts)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics_without_seconds(parts) == metrics_without_seconds(whole)
    for epoch in range(1, 9):
        name = f"samples/epoch_{epoch:04d}.npy"
        np.testing.assert_array_equal(np.load(parts / name), np.load(whole / name))
