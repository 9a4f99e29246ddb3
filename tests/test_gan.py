"""Two models, two optimizers, one loop (D2L 17.1): the discriminator's update, then the
generator's against the updated discriminator, checked against finite differences of a numpy
GAN; the book's run ends with both losses near ln 2; a stopped GAN resumes bit for bit."""

import json

import jax
import numpy as np
import pytest

from dlrun.core.config import ConfigError, load_config
from dlrun.core.data import load_dataset
from dlrun.core.report.progress import make_reporter
from dlrun.core.training.setup import build_setup, start_state
from dlrun.core.training.state import Arrays
from dlrun.core.training.train import train

from .conftest import CONFIGS, numeric_grad

SGD = ["optimizers.discriminator={name: sgd, lr: 0.3}", "optimizers.generator={name: sgd, lr: 0.2}"]


def np_losses(d, g, x, z):
    """loss_D and loss_G of the book's GAN in float64: D = 2-5-3-1 tanh, G = Dense(2)."""
    def score(v):
        h = np.tanh(v @ d["dense0"]["w"] + d["dense0"]["b"])
        h = np.tanh(h @ d["dense1"]["w"] + d["dense1"]["b"])
        return (h @ d["dense2"]["w"] + d["dense2"]["b"])[:, 0]

    fake = z @ g["dense0"]["w"] + g["dense0"]["b"]
    real_term, fake_term = np.logaddexp(0, -score(x)).mean(), np.logaddexp(0, score(fake)).mean()
    return (real_term + fake_term) / 2, np.logaddexp(0, -score(fake)).mean()


def flat(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    sizes = [np.size(a) for a in leaves]

    def unflat(v):
        parts = np.split(np.asarray(v, np.float64), np.cumsum(sizes)[:-1])
        return jax.tree_util.tree_unflatten(treedef, [p.reshape(np.shape(a)) for p, a in zip(parts, leaves)])

    return np.concatenate([np.ravel(a) for a in leaves]).astype(np.float64), unflat


def test_one_step_updates_the_discriminator_then_the_generator_against_it():
    cfg = load_config(CONFIGS / "gan_gaussian.yaml", ["data.num_train=16", *SGD, "model.init_scale=0.5"])
    data = load_dataset(cfg.data, cfg.seed)
    setup = build_setup(cfg, data)
    state, _ = start_state(setup, jax.random.PRNGKey(0))
    batch = Arrays(jax.numpy.asarray(data.x_train[:8]), jax.numpy.asarray(data.y_train[:8]))
    key = jax.random.PRNGKey(7)
    new, metrics = jax.jit(setup.train_step)(state, batch, key)
    z = np.asarray(jax.random.normal(key, (8, 2)), np.float64)  # the noise both updates draw
    x = np.asarray(batch.x, np.float64)
    d0, unflat_d = flat(jax.device_get(state.params["discriminator"]))
    g0, unflat_g = flat(jax.device_get(state.params["generator"]))
    grad_d = numeric_grad(lambda v: np_losses(unflat_d(v), unflat_g(g0), x, z)[0], d0)
    d1 = d0 - 0.3 * grad_d
    grad_g = numeric_grad(lambda v: np_losses(unflat_d(d1), unflat_g(v), x, z)[1], g0)  # against the new D
    g1 = g0 - 0.2 * grad_g
    np.testing.assert_allclose(flat(jax.device_get(new.params["discriminator"]))[0], d1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(flat(jax.device_get(new.params["generator"]))[0], g1, rtol=1e-4, atol=1e-6)
    loss_d, _ = np_losses(unflat_d(d0), unflat_g(g0), x, z)
    _, loss_g = np_losses(unflat_d(d1), unflat_g(g0), x, z)
    np.testing.assert_allclose([metrics["loss_D"], metrics["loss_G"]], [loss_d, loss_g], rtol=1e-5)
    assert bool(metrics["finite"])


def test_the_books_gan_ends_near_ln2_and_generates_the_datas_covariance(tmp_path):
    result = train(load_config(CONFIGS / "gan_gaussian.yaml", ["trainer.progress=none"]), tmp_path / "run", plot=True)
    last = result.rows[-1]
    assert abs(last["train/loss_D"] - np.log(2)) < 0.01 and abs(last["train/loss_G"] - np.log(2)) < 0.02
    gen = json.loads((tmp_path / "run" / "summary.json").read_text())["generated"]
    np.testing.assert_allclose(gen["cov"], gen["data_cov"], rtol=0.25, atol=0.15)
    np.testing.assert_allclose(gen["mean"], gen["data_mean"], atol=0.25)
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "params.npz").is_file()


def test_a_stopped_gan_resumes_to_the_numbers_of_one_never_stopped(tmp_path):
    cfg = load_config(CONFIGS / "gan_gaussian.yaml", ["data.num_train=200", "trainer.epochs=4", "trainer.progress=none"])
    whole = train(cfg, tmp_path / "whole", plot=False)
    train(cfg, tmp_path / "parts", plot=False, stop_epoch=2)
    resumed = train(cfg, tmp_path / "parts", plot=False, resume=True, reporter=make_reporter("none", 0, ""))
    assert resumed.rows == [{**r, "seconds": s["seconds"]} for r, s in zip(whole.rows, resumed.rows)]


def test_optimizers_must_name_the_models_parts(tmp_path, fake_fmnist_dir):
    with pytest.raises(ConfigError, match=r"optimizers: critic: not a part of model 'gan'; its parts are discriminator, generator"):
        train(load_config(CONFIGS / "gan_gaussian.yaml", ["optimizers.critic={lr: 0.1}"]), tmp_path / "a", plot=False)
    with pytest.raises(ConfigError, match=r"optimizers: model 'mlp' is one part"):
        train(load_config(CONFIGS / "mlp.yaml", [f"data.dir={fake_fmnist_dir}", "optimizers.generator={lr: 0.1}"]),
              tmp_path / "b", plot=False)
