"""D2L 4.9 distribution shift: the shifts are real, the corrections help, the prior estimate works."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlrun.core.config import ConfigError, load_config
from dlrun.core.data.idx import write_idx
from dlrun.experiments import distribution_shift as ds
from dlrun.experiments import run_config

from .conftest import CONFIGS

OUTPUTS = ("config.yaml", "metrics.csv", "summary.json", "shift.png")
CLIP = 1.2  # small enough that some weights are clipped
SMALL = (  # a few seconds on a CPU
    "trainer.progress=none", "trainer.epochs=5", "data.batch_size=32",
    "experiment.covariate.num_unlabeled=1000",
    "experiment.label.num_train=1200", "experiment.label.num_val=2400", "experiment.label.num_test=400",
)  # fmt: skip


def run(run_dir: Path, *overrides: str) -> dict:
    cfg = load_config(CONFIGS / "distribution_shift.yaml", [*SMALL, *overrides])
    return run_config(cfg, run_dir, source="distribution_shift.yaml")


def write_shifty_fashion_mnist(directory: Path, n_train: int = 8000, n_val: int = 1000, seed: int = 0) -> Path:
    """Fashion-MNIST-shaped IDX files in the manner of conftest's fake, made for shifts. Class c
    lights a band at row 2c + 4 with an intensity drawn per image, so that mean brightness varies
    between images far more than pixel noise makes it vary. Half the images also light the band
    of c's partner class (c + 5 mod 10) at 0.6 of that intensity, or (one time in five) light the
    partner's band brighter than c's: those are ambiguous, and the class priors decide them."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)  # balanced: the priors are the test's
        images = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
        level = rng.integers(40, 256, n)
        ambiguous, swapped = rng.random(n) < 0.5, rng.random(n) < 0.2
        for i, c in enumerate(labels):
            bands = {c: 1.0}
            if ambiguous[i]:
                bands = {c: 0.6, (c + 5) % 10: 1.0} if swapped[i] else {c: 1.0, (c + 5) % 10: 0.6}
            for band, scale in bands.items():
                images[i, 2 * band + 4 : 2 * band + 6, 4:24] = int(level[i] * scale)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """Both shifts on the fake data, with a small clip constant c."""
    data_dir = write_shifty_fashion_mnist(tmp_path_factory.mktemp("fmnist"))
    run_dir = tmp_path_factory.mktemp("shifted") / "run"
    return run(run_dir, f"data.dir={data_dir}", f"experiment.covariate.clip={CLIP}"), run_dir


def test_writes_every_output(shifted):
    summary, run_dir = shifted
    for name in OUTPUTS:
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "shift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run_dir / "summary.json").read_text()).keys() == summary.keys()
    assert load_config(run_dir / "config.yaml").experiment.options()["kind"] == "both"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["shift"]) == ["covariate", "covariate", "label", "label"]
    assert list(metrics["corrected"]) == [False, True, False, True]
    assert list(metrics["test/acc"]) == [
        summary[f"{s}/acc_{c}"] for s in ("covariate", "label") for c in ("uncorrected", "corrected")
    ]
    assert (summary["label/train_size"], summary["label/val_size"], summary["label/test_size"]) == (1200, 2400, 400)


def test_covariate_shift_is_real_and_the_weights_undo_it(shifted):
    """Favouring bright images makes the training set brighter than the test set; the unlabeled
    sample is not; the weights beta, clipped at c, move the training set's weighted mean
    brightness part of the way back."""
    s, _ = shifted
    gap = s["covariate/train_brightness"] - s["covariate/test_brightness"]
    assert gap > 0.5 * s["covariate/brightness_std"]
    assert abs(s["covariate/unlabeled_brightness"] - s["covariate/test_brightness"]) < 0.2 * gap
    weighted_gap = s["covariate/weighted_train_brightness"] - s["covariate/unlabeled_brightness"]
    assert 0 < weighted_gap < 0.8 * gap
    assert s["covariate/beta_max"] == CLIP and 0 < s["covariate/beta_clipped_fraction"] < 0.5
    # Here a linear classifier can represent p(y | x), which covariate shift leaves alone, so both
    # reach the same accuracy; the gain under a misspecified model is checked on real data below.
    assert s["covariate/acc_corrected"] >= s["covariate/acc_uncorrected"] > 0.8


def test_label_shift_correction_estimates_the_prior_and_helps(shifted):
    """Train priors 1:10 (classes 0-4 rare), test priors 10:1: the uncorrected classifier calls
    every ambiguous image for the class common in training; the estimate of q puts it right."""
    s, _ = shifted
    assert s["label/prior_l1_shift"] > 1.5  # the priors really changed
    assert s["label/prior_l1_error"] < 0.25 * s["label/prior_l1_shift"]
    estimated, true = np.array(s["label/estimated_test_prior"]), np.array(s["label/test_prior"])
    assert estimated[:5].sum() > 0.75 and true[:5].sum() > 0.9
    assert s["label/acc_corrected"] >= s["label/acc_uncorrected"] + 0.2


@pytest.mark.slow
def test_full_fashion_mnist_covariate_correction_helps(tmp_path, real_fmnist_dir):
    """The shipped config's covariate shift on real data, 3 epochs: a clear gain from the weights."""
    real = (f"data.dir={real_fmnist_dir}", "data.batch_size=256", "experiment.covariate.num_unlabeled=10000")
    s = run(tmp_path / "run", *real, "experiment.kind=covariate", "trainer.epochs=3")
    assert s["covariate/acc_corrected"] >= s["covariate/acc_uncorrected"] + 0.03


# ------------------------------------------------------------------------- pieces


def test_confusion_matrix_and_prior_estimate_by_hand():
    """3 classes; validation: class 0 x10 (8 -> 0, 2 -> 1), class 1 x10 (1 -> 0, 8 -> 1, 1 -> 2),
    class 2 x4 (1 -> 1, 3 -> 2). C[i, j] = P(y_hat = i | y = j); with q = (0.5, 0.3, 0.2),
    mu = C q = (0.43, 0.39, 0.18), and solving C q = mu gives q back."""
    labels = np.array([0] * 10 + [1] * 10 + [2] * 4)
    predicted = np.array([0] * 8 + [1] * 2 + [0] + [1] * 8 + [2] + [1] + [2] * 3)
    confusion = ds.confusion_matrix(predicted, labels, 3)
    expected = np.array([[0.8, 0.1, 0.0], [0.2, 0.8, 0.25], [0.0, 0.1, 0.75]])
    np.testing.assert_allclose(confusion, expected)
    np.testing.assert_allclose(confusion @ [0.5, 0.3, 0.2], [0.43, 0.39, 0.18])
    np.testing.assert_allclose(ds.estimate_target_prior(confusion, np.array([0.43, 0.39, 0.18])), [0.5, 0.3, 0.2])


def test_prior_estimate_is_clipped_to_the_simplex():
    # C = I, a noisy mu with a negative entry: clip (0.7, 0.4, 0) and renormalise by 1.1
    q = ds.estimate_target_prior(np.eye(3), np.array([0.7, 0.4, -0.1]))
    np.testing.assert_allclose(q, [0.7 / 1.1, 0.4 / 1.1, 0.0])


def test_sample_by_prior_draws_disjoint_sets_with_the_prior():
    labels = np.repeat(np.arange(3), 100)
    a, b = ds.sample_by_prior(labels, (1, 2, 1), (40, 20), np.random.default_rng(0), "train", "t")
    assert len(set(a) | set(b)) == 60
    assert np.bincount(labels[a]).tolist() == [10, 20, 10] and np.bincount(labels[b]).tolist() == [5, 10, 5]
    with pytest.raises(ConfigError, match="class 1"):
        ds.sample_by_prior(labels, (1, 2, 1), (300,), np.random.default_rng(0), "train", "t")


@pytest.mark.parametrize(
    "override, key",
    [  # an unknown key, a misspelt nested key, a bad value, an invalid prior
        ("experiment.clip=5", "experiment.clip: unknown key"),
        ("experiment.covariate.clipp=5",
         "experiment.covariate.clipp: unknown key; did you mean 'experiment.covariate.clip'?"),
        ("experiment.kind=concept", "experiment.kind: expected one of"),
        ("experiment.label.train_prior=[1, 0, 1]", "experiment.label.train_prior: expected a positive weight"),
    ],
)
def test_bad_options_name_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match="^" + re.escape(f"distribution_shift.yaml: {key}")):
        run(tmp_path / "run", override)
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("experiment.kind=label", "experiment.label.test_prior=[1,2]"), "experiment.label.test_prior: expected 10 weights"),
        (("experiment.kind=covariate",), "experiment.covariate.num_unlabeled: expected fewer than the 600 training images"),
        (("experiment.kind=label",), "experiment.label: the train split has"),
    ],
)
def test_options_that_do_not_fit_the_data_are_config_errors(tmp_path, fake_fmnist_dir, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(tmp_path / "run", f"data.dir={fake_fmnist_dir}", *overrides)



