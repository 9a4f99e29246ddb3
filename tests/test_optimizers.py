"""Optimizer chains and schedules against closed forms."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlrun.core.config import OptimizerConfig, ScheduleConfig
from dlrun.core.training.optimizers import build_optimizer, build_schedule


def one_update(cfg, params, grads):
    opt = build_optimizer(cfg, steps_per_epoch=10, epochs=5)
    updates, _ = opt.update(grads, opt.init(params), params)
    return optax.apply_updates(params, updates)


def test_sgd_with_weight_decay_leaves_biases_alone():
    params = {"dense0": {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}}
    grads = {"dense0": {"w": jnp.array([0.5, 0.5]), "b": jnp.array([1.0])}}
    out = one_update(OptimizerConfig(lr=0.1, weight_decay=0.5), params, grads)
    np.testing.assert_allclose(out["dense0"]["w"], [1 - 0.1 * (0.5 + 0.5), -2 - 0.1 * (0.5 - 1.0)])
    np.testing.assert_allclose(out["dense0"]["b"], [3 - 0.1 * 1.0])


def test_clip_by_global_norm():
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.array([3.0, 4.0])}  # norm 5
    out = one_update(OptimizerConfig(lr=1.0, clip_norm=1.0), params, grads)
    np.testing.assert_allclose(out["w"], [-0.6, -0.8], rtol=1e-6)


def test_momentum_accumulates():
    opt = build_optimizer(OptimizerConfig(lr=1.0, momentum=0.9), 1, 1)
    params, state = {"w": jnp.zeros(())}, None
    state = opt.init(params)
    for expected in (-1.0, -1.0 - 1.9):
        updates, state = opt.update({"w": jnp.ones(())}, state, params)
        params = optax.apply_updates(params, updates)
        assert float(params["w"]) == pytest.approx(expected)


def test_schedules_match_closed_forms():
    step = build_schedule(ScheduleConfig(name="step", step_epochs=2, gamma=0.5), 1.0, 10, 100)
    assert [float(step(s)) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    cos = build_schedule(ScheduleConfig(name="cosine", final_fraction=0.1), 2.0, 10, 100)
    for s in (0, 30, 100):
        expected = 2.0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / 100)))
        assert float(cos(s)) == pytest.approx(expected, rel=1e-5)
    assert float(build_schedule(ScheduleConfig(), 0.3, 10, 100)(77)) == pytest.approx(0.3)
