"""The noisy sine of D2L 9.1: its examples, k-step-ahead and multistep predictions against
plain loops, and the experiment end to end (errors grow with k, as the book shows)."""

import json

import numpy as np
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config.schema import SineData
from dlrun.core.data.synthetic import sine, sine_series
from dlrun.experiments.sequence import k_step_predictions, multistep_predictions

from .conftest import CONFIGS

WEIGHTS = np.array([0.1, -0.2, 0.3, 0.7], np.float32)


def linear(features):
    return features @ WEIGHTS


def test_examples_are_the_previous_tau_values():
    cfg = SineData(T=50, tau=4, num_train=30)
    x = sine_series(cfg, seed=3)
    data = sine(cfg, seed=3)
    assert data.x_train.shape == (30, 4) and data.x_val.shape == (16, 4)
    np.testing.assert_array_equal(data.x_train[7], x[7:11])
    assert data.y_train[7, 0] == x[11] and data.y_val[0, 0] == x[34]
    noise = x - np.sin(0.01 * np.arange(1, 51))
    assert 0.1 < noise.std() < 0.3  # N(0, 0.2^2)
    np.testing.assert_array_equal(sine_series(cfg, seed=3), x)


def test_k_step_predictions_match_a_loop():
    x = np.random.default_rng(0).normal(size=40).astype(np.float32)
    tau, k_max = 4, 6
    got = k_step_predictions(linear, x, tau, k_max)
    n = len(x) - tau - k_max + 1
    assert got.shape == (k_max, n)
    for j in range(n):
        window = list(x[j : j + tau])
        for k in range(1, k_max + 1):
            window.append(float(np.dot(window[-tau:], WEIGHTS)))
            # the k-step prediction of x[j + tau + k - 1]
            np.testing.assert_allclose(got[k - 1, j], window[-1], rtol=1e-5, atol=1e-6)
    # a model that repeats the last value predicts it for every k
    persist = k_step_predictions(lambda f: f[:, -1], x, tau, k_max)
    np.testing.assert_array_equal(persist, np.tile(x[tau - 1 : tau - 1 + n], (k_max, 1)))


def test_multistep_feeds_predictions_back():
    x = np.random.default_rng(1).normal(size=30).astype(np.float32)
    got = multistep_predictions(linear, x, 4, start=10)
    np.testing.assert_array_equal(got[:10], x[:10])
    expected = list(x[:10])
    for t in range(10, 30):
        expected.append(float(np.dot(expected[t - 4 : t], WEIGHTS)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_sine_experiment_reproduces_the_book(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(CONFIGS / "sine_linear.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val/loss"] < 0.03  # book (1.0, 1/2 MSE): 0.0245 (JAX), 0.0250 (MXNet)
    mse = summary["kstep_mse"]
    assert mse["1"] < mse["16"] < mse["64"], mse  # the error grows with the steps predicted ahead
    assert abs(mse["1"] - 2 * summary["val/loss"]) < 0.02  # one-step MSE ~ twice the 1/2 MSE loss
    assert summary["multistep_mse"] > 2 * mse["1"]
    assert (out / "predictions.png").stat().st_size > 20000 and (out / "model" / "metrics.csv").is_file()
