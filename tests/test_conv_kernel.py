"""Learning a kernel (D2L 7.2.4): gradient descent on one 1x2 convolution recovers [1, -1].
Checked against numpy: the book's image and its edges, the loss and its finite-difference
gradient, and the whole descent replayed from the run's initial kernel."""

import json

import jax
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import ConfigError, load_config
from dlrun.core.errors import TrainingDiverged
from dlrun.core.nn import layers as L
from dlrun.experiments import run_config
from dlrun.experiments.conv_kernel import edge_image, make_step

from .conftest import CONFIGS, numeric_grad

runner = CliRunner()


def book_image():
    """X: 6x8 ones with columns 2-5 zero; its edges under [[1, -1]]: +1 at column 1, -1 at column 5."""
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    y = np.zeros((6, 7))
    y[:, 1], y[:, 5] = 1, -1
    return x, y


def sse(w, x, y):
    """Sum of squared errors of the 1x2 cross-correlation with kernel w = (w0, w1), in numpy."""
    y_hat = w[0] * x[:, :-1] + w[1] * x[:, 1:]
    return float(np.sum((y_hat - y) ** 2))


def descend(w, x, y, lr, iterations):
    """Plain gradient descent on `sse` with its analytic gradient; the loss before each update."""
    w, losses = np.asarray(w, np.float64), []
    for _ in range(iterations):
        r = w[0] * x[:, :-1] + w[1] * x[:, 1:] - y
        losses.append(np.sum(r**2))
        w = w - lr * 2 * np.array([np.sum(r * x[:, :-1]), np.sum(r * x[:, 1:])])
    return w, np.array(losses)


def run(tmp_path, *overrides, name="run"):
    cfg = load_config(CONFIGS / "conv_kernel.yaml", ["trainer.progress=none", *overrides])
    return run_config(cfg, tmp_path / name, source="conv_kernel.yaml")


def test_edge_image_is_the_books():
    x, y = edge_image()
    assert x.shape == (1, 6, 8, 1) and y.shape == (1, 6, 7, 1)
    bx, by = book_image()
    np.testing.assert_array_equal(x[0, :, :, 0], bx)
    np.testing.assert_array_equal(y[0, :, :, 0], by)


def test_learns_the_kernel_and_writes_the_run(tmp_path):
    s = run(tmp_path, "experiment.iterations=30")
    d = tmp_path / "run"
    assert {"config.yaml", "metrics.csv", "summary.json", "loss.png"} <= {p.name for p in d.iterdir()}
    assert (d / "loss.png").stat().st_size > 0
    losses = pd.read_csv(d / "metrics.csv")
    assert list(losses["iteration"]) == list(range(1, 31))
    assert np.all(np.diff(losses["loss"]) < 0) and losses["loss"].iloc[-1] < 0.1
    np.testing.assert_allclose(s["learned_kernel"], [1, -1], atol=0.1)
    on_disk = json.loads((d / "summary.json").read_text())
    assert on_disk["learned_kernel"] == s["learned_kernel"] and on_disk["true_kernel"] == [1, -1]
    assert on_disk["max_abs_error"] == pytest.approx(np.max(np.abs(np.array(s["learned_kernel"]) - [1, -1])))
    assert on_disk["loss"] == pytest.approx(losses["loss"].iloc[-1])
    assert on_disk["book"]["mxnet_0.16"]["loss"][-1] == 0.004


def test_the_descent_is_numpys_gradient_descent(tmp_path):
    """The book's 10 steps at lr 0.03, replayed in numpy from the run's (random) initial kernel."""
    s = run(tmp_path)
    w0 = np.array(s["initial_kernel"])
    assert np.all(np.abs(w0) <= 1 / np.sqrt(2)) and w0[0] != w0[1]  # U(-1/sqrt(2), 1/sqrt(2)), random
    x, y = book_image()
    w, losses = descend(w0, x, y, lr=0.03, iterations=10)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "run" / "metrics.csv")["loss"], losses, rtol=1e-4)
    np.testing.assert_allclose(s["learned_kernel"], w, rtol=1e-5, atol=1e-6)
    assert s["loss/learned_kernel"] == pytest.approx(sse(w, x, y), rel=1e-4)
    # each step shrinks the loss by at least max|1 - lr * eig(Hessian)|^2, whatever the start
    a = np.stack([x[:, :-1].ravel(), x[:, 1:].ravel()], axis=1)  # sse(w) = |a w - y|^2
    hessian = 2 * a.T @ a
    rate = np.max(np.abs(1 - 0.03 * np.linalg.eigvalsh(hessian))) ** 2
    assert rate < 1 and np.all(losses[1:] <= rate * losses[:-1] * (1 + 1e-4))


def test_same_seed_same_run_other_seed_other_start(tmp_path):
    run(tmp_path, name="a")
    run(tmp_path, name="b")
    for f in ("metrics.csv", "summary.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    other = run(tmp_path, "seed=1", name="c")
    assert other["initial_kernel"] != json.loads((tmp_path / "a" / "summary.json").read_text())["initial_kernel"]


@pytest.mark.parametrize("w", [[0.3, -0.2], [1.5, 0.7]])
def test_step_gradient_matches_finite_differences(w):
    rng = np.random.default_rng(0)
    lr = 0.01
    for x, y in (book_image(), (rng.normal(size=(5, 6)), rng.normal(size=(5, 5)))):
        layer = L.conv2d(1, (1, 2), use_bias=False)
        params = {"w": jax.numpy.asarray(np.array(w, np.float32).reshape(1, 2, 1, 1))}
        xs, ys = (np.asarray(a, np.float32)[None, :, :, None] for a in (x, y))
        new, loss = make_step(layer, lr)(params, xs, ys)
        grad_used = (np.asarray(params["w"], np.float64) - np.asarray(new["w"], np.float64)).reshape(2) / lr
        expected = numeric_grad(lambda v: sse(v, x, y), np.array(w))
        np.testing.assert_allclose(grad_used, expected, rtol=2e-3, atol=2e-3)
        assert float(loss) == pytest.approx(sse(np.array(w), x, y), rel=1e-5)


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="experiment.iterations: expected a number above 0"):
        run(tmp_path, "experiment.iterations=0")
    with pytest.raises(ConfigError, match="experiment.iteration: unknown key; did you mean 'experiment.iterations'"):
        run(tmp_path, "experiment.iteration=5")
    result = runner.invoke(app, ["train", str(CONFIGS / "conv_kernel.yaml"), "--set", "experiment.lr=-1",
                                 "--out", str(tmp_path / "cli")])
    assert result.exit_code == 2 and "experiment.lr" in result.output
    assert not (tmp_path / "cli" / "metrics.csv").exists()


def test_too_large_a_step_diverges_loudly(tmp_path):
    with pytest.raises(TrainingDiverged, match="non-finite at iteration"):
        run(tmp_path, "experiment.lr=0.5", "experiment.iterations=40")
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) > 1
