"""The book's optimizers written from their equations (D2L 11.6-11.10) against Optax's own; their
runs on the book's toy functions are checked against its printed points in test_optimization.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlrun.core.config import OptimizerConfig
from dlrun.core.training import from_scratch
from dlrun.core.training.optimizers import build_optimizer

LR = 0.01

# (from scratch, Optax's own), both before the learning rate
PAIRS = {
    "momentum": (from_scratch.momentum(0.9), optax.trace(decay=0.9)),
    "adagrad": (from_scratch.adagrad(1e-6), optax.scale_by_rss(initial_accumulator_value=0.0, eps=1e-6)),
    "rmsprop": (from_scratch.rmsprop(0.9, 1e-6), optax.scale_by_rms(decay=0.9, eps=1e-6)),
    "adadelta": (from_scratch.adadelta(0.9, 1e-5), optax.scale_by_adadelta(rho=0.9, eps=1e-5)),
    "adam": (from_scratch.adam(0.9, 0.999, 1e-6), optax.scale_by_adam(0.9, 0.999, 1e-6)),
    "yogi": (from_scratch.yogi(0.9, 0.999, 1e-3), optax.scale_by_yogi(0.9, 0.999, 1e-3, initial_accumulator_value=0.0)),
}


def run(transform, grads_seq, params):
    opt = optax.chain(transform, optax.scale(-LR))
    state = opt.init(params)
    trajectory = []
    for grads in grads_seq:
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_from_scratch_matches_optax_step_by_step(name):
    key = jax.random.PRNGKey(0)
    params = {"w": jax.random.normal(key, (5, 3)), "b": jnp.zeros(3)}
    grads_seq = []
    for i in range(60):  # gradients of changing scale and sign, some exactly zero
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        scale = 10.0 ** (i % 5 - 2)
        grads_seq.append({"w": scale * jax.random.normal(k1, (5, 3)),
                          "b": jnp.where(jnp.arange(3) == i % 3, 0.0, jax.random.normal(k2, (3,)))})
    ours, theirs = PAIRS[name]
    for step, (a, b) in enumerate(zip(run(ours, grads_seq, params), run(theirs, grads_seq, params))):
        for leaf in ("w", "b"):
            np.testing.assert_allclose(a[leaf], b[leaf], rtol=2e-6, atol=1e-6, err_msg=f"{name}, step {step + 1}")


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad", "rmsprop", "adadelta", "yogi"])
def test_config_impls_agree(name):
    """`impl: scratch` and `impl: optax` give the same training steps through build_optimizer."""
    extra = {"momentum": 0.9} if name == "sgd" else {}
    params = {"dense0": {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([0.5])}}
    out = []
    for impl in ("optax", "scratch"):
        opt = build_optimizer(OptimizerConfig(name=name, impl=impl, lr=0.05, **extra), 10, 2)
        p, state = params, opt.init(params)
        for i in range(15):
            g = jax.tree_util.tree_map(lambda x: jnp.sin(x * (i + 1)) + 0.1 * i, p)
            updates, state = opt.update(g, state, p)
            p = optax.apply_updates(p, updates)
        out.append(p)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), *out)
    assert not np.allclose(out[0]["dense0"]["w"], params["dense0"]["w"])


def test_scratch_nesterov_is_refused():
    with pytest.raises(ValueError, match="nesterov"):
        OptimizerConfig(momentum=0.9, nesterov=True, impl="scratch")
