"""Chapter 4 experiments that run on the generic loop or small experiment modules:
polynomial model selection (4.4), weight decay (4.5), dropout (4.6), gradient checks (4.7),
initialization (4.8). Each runs at a reduced size and asserts the book's qualitative result."""

import json
import math

import jax
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import ConfigError, PolynomialData, load_config
from dlrun.core.data.spec import BatchSpec
from dlrun.core.data.synthetic import polynomial
from dlrun.core.training.train import train

from .conftest import CONFIGS

runner = CliRunner()


def run(tmp_path, config, *overrides, name="run"):
    cfg = load_config(CONFIGS / config, ["trainer.progress=none", *overrides])
    return train(cfg, tmp_path / name).summary


# ------------------------------------------------------------------- 4.4 polynomials


def test_polynomial_features_are_scaled_powers():
    data = polynomial(PolynomialData(num_features=6, noise=0.0), seed=3)
    x = data.x_train[:, 1:2]  # the x^1 / 1! column is x itself
    expected = np.hstack([x**i / math.factorial(i) for i in range(6)])
    np.testing.assert_allclose(data.x_train, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.y_train[:, 0], data.x_train[:, :4] @ [5, 1.2, -3.4, 5.6], rtol=1e-4, atol=1e-4)


def test_cubic_fit_recovers_the_true_weights(tmp_path):
    s = run(tmp_path, "poly_normal.yaml")
    np.testing.assert_allclose(s["learned_w"], [5, 1.2, -3.4, 5.6], atol=0.1)
    cfg = load_config(CONFIGS / "poly_normal.yaml")
    data = polynomial(cfg.data, cfg.seed)
    lstsq = np.linalg.lstsq(data.x_train, data.y_train[:, 0], rcond=None)[0]  # closed form
    np.testing.assert_allclose(s["learned_w"], lstsq, atol=0.05)


def test_linear_fit_underfits(tmp_path):
    s = run(tmp_path, "poly_underfit.yaml")
    assert s["train/loss"] > 1 and s["val/loss"] > 1  # both stay high (noise variance is 0.01)


def test_twenty_features_overfit(tmp_path):
    s = run(tmp_path, "poly_overfit.yaml")
    assert s["val/loss"] > 2.5 * s["train/loss"]


def test_degree_experiment_picks_the_true_degree(tmp_path):
    from dlrun.experiments.polynomial import run as run_degrees

    cfg = load_config(CONFIGS / "poly_degrees.yaml", ["experiment.num_features=[2, 4, 20]", "trainer.epochs=300"])
    summary = run_degrees(cfg, tmp_path)
    table = pd.read_csv(tmp_path / "degrees.csv")
    assert list(table["num_features"]) == [2, 4, 20]
    assert summary["best/num_features"] == 4
    assert (tmp_path / "degrees.png").stat().st_size > 0


def test_experiment_options_are_validated(tmp_path):
    from dlrun.experiments.polynomial import run as run_degrees

    cfg = load_config(CONFIGS / "poly_degrees.yaml", ["experiment.num_featurs=[2]"])
    with pytest.raises(ConfigError, match="experiment.num_featurs: unknown key; did you mean 'experiment.num_features'"):
        run_degrees(cfg, tmp_path)


def test_unknown_experiment_lists_the_valid_ones():
    result = runner.invoke(app, ["show-config", str(CONFIGS / "mlp.yaml"), "--set", "experiment.name=nope"])
    assert result.exit_code == 2 and "unknown experiment 'nope'" in result.output and "polynomial_degrees" in result.output


# --------------------------------------------------------------------- 4.5 weight decay


def test_weight_decay_prevents_overfitting(tmp_path):
    free = run(tmp_path, "weight_decay_scratch.yaml", name="free")
    decayed = run(tmp_path, "weight_decay_scratch_l3.yaml", name="decayed")
    assert free["w_norm"] > 10 and decayed["w_norm"] < 1  # book: 13-15 and 0.34-0.38
    assert free["val/loss"] > 100 * free["train/loss"]  # overfit: interpolates 20 points
    assert decayed["val/loss"] < free["val/loss"] / 10


def test_l2_penalty_equals_decoupled_weight_decay_for_sgd(tmp_path):
    """With plain SGD, loss + lambda/2 ||w||^2 and Optax's add_decayed_weights(lambda) on the
    weights are the same update; the bias is left alone in both."""
    scratch = run(tmp_path, "weight_decay_scratch_l3.yaml", "trainer.epochs=20", name="a")
    concise = run(tmp_path, "weight_decay_concise_l3.yaml", "loss.name=squared_error", "trainer.epochs=20", name="b")
    assert scratch["w_norm"] == pytest.approx(concise["w_norm"], rel=1e-4)
    assert scratch["val/loss"] == pytest.approx(concise["val/loss"], rel=1e-3)


# ------------------------------------------------------------------------- 4.6 dropout


def test_dropout_mlp_learns_and_evaluates_deterministically(tmp_path, fake_fmnist_dir):
    from dlrun.core.data import load_dataset
    from dlrun.core.nn.models import build_model

    cfg = load_config(CONFIGS / "dropout.yaml", [f"data.dir={fake_fmnist_dir}", "trainer.epochs=4", "data.batch_size=32", "trainer.progress=none"])
    result = train(cfg, tmp_path / "run")
    assert result.rows[-1]["train/loss"] < result.rows[0]["train/loss"] and result.summary["val/acc"] > 0.5
    data = load_dataset(cfg.data, cfg.seed)
    model = build_model(cfg.model, BatchSpec(data.input_shape, data.output_dim))
    x = data.x_val[:64]
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    p, s = result.state.params, result.state.model_state
    np.testing.assert_array_equal(model.apply(p, s, x, train=False, key=k1)[0], model.apply(p, s, x, train=False, key=k2)[0])
    assert not np.allclose(model.apply(p, s, x, train=True, key=k1)[0], model.apply(p, s, x, train=True, key=k2)[0])


# -------------------------------------------------------------------- 4.7 gradcheck


@pytest.fixture
def restore_x64():
    yield
    jax.config.update("jax_enable_x64", False)


def test_gradcheck_passes_for_a_correct_model(restore_x64, fake_fmnist_dir):
    result = runner.invoke(app, ["gradcheck", str(CONFIGS / "mlp.yaml"), "--set", f"data.dir={fake_fmnist_dir}", "--set", "model.hidden=[16]", "--per-leaf", "3"])
    assert result.exit_code == 0, result.output
    assert "ok: 12 coordinates" in result.output


def test_gradcheck_catches_a_wrong_gradient(restore_x64, monkeypatch):
    """A loss whose custom derivative is off by a factor of 2 must fail the check."""
    import jax.numpy as jnp

    @jax.custom_jvp
    def bad_mse(pred, y):
        return jnp.mean((pred - y.reshape(pred.shape)) ** 2, axis=1)

    @bad_mse.defjvp
    def _(primals, tangents):
        pred, y = primals
        dpred, _ = tangents
        diff = pred - y.reshape(pred.shape)
        return bad_mse(pred, y), jnp.mean(4 * diff * dpred, axis=1)  # correct is 2 * diff

    from dlrun.core.nn.losses import LOSSES, Loss

    monkeypatch.setitem(LOSSES, "mse", Loss(bad_mse, classify=False))
    result = runner.invoke(app, ["gradcheck", str(CONFIGS / "linreg_concise.yaml")])
    assert result.exit_code == 1 and "FAILED" in result.output


# ---------------------------------------------------------------- 4.8 initialization


@pytest.mark.slow
def test_initialization_experiment(tmp_path, fake_fmnist_dir):
    from dlrun.experiments.initialization import matrix_product_norms
    from dlrun.experiments.initialization import run as run_init

    norms = matrix_product_norms(0, 100)
    assert norms[-1] > 1e15 and norms[-1] > 1e10 * norms[0]  # explodes
    cfg = load_config(
        CONFIGS / "initialization.yaml",
        [f"data.dir={fake_fmnist_dir}", "data.num_train=null", "experiment.depth=6", "experiment.width=32",
         "experiment.train=false"],
    )
    summary = run_init(cfg, tmp_path)
    grads = pd.read_csv(tmp_path / "grad_norms.csv")
    assert len(grads) == 2 * 3 * 7  # activations x inits x dense layers
    g = summary  # first-layer gradient norms at initialisation
    assert g["grad_norm_first_layer/sigmoid/normal"] < 1e-6 * g["grad_norm_first_layer/relu/he"]  # vanishing
    assert g["grad_norm_first_layer/relu/normal"] < 1e-3 * g["grad_norm_first_layer/relu/xavier"]
    for name in ("sigmoid.png", "matrix_product.png", "grad_norms.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["matrix_product/final_norm"] > 1e15
