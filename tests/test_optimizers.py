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
    step = build_schedule(ScheduleConfig(name="step", step_epochs=2, gamma=0.5), 1.0, 10, 10)
    assert [float(step(s)) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    cos = build_schedule(ScheduleConfig(name="cosine", final_fraction=0.1), 2.0, 10, 10)
    for s in (0, 30, 100):
        expected = 2.0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / 100)))
        assert float(cos(s)) == pytest.approx(expected, rel=1e-5)
    assert float(build_schedule(ScheduleConfig(), 0.3, 10, 10)(77)) == pytest.approx(0.3)


# ---------------------------------------------------------------------------- D2L 11.11 schedules


def lrs(schedule, counts):
    return np.array([float(schedule(c)) for c in counts])


def test_factor_schedule_decays_to_its_floor():
    """D2L 11.11's factor scheduler: lr <- max(min, factor * lr) per update (base 2.0, 0.9, 0.01)."""
    cfg = ScheduleConfig(name="factor", gamma=0.9, min_fraction=0.01 / 2.0)
    lr = build_schedule(cfg, 2.0, 1, 50)
    expected, book = [], 2.0
    for _ in range(50):
        expected.append(book)
        book = max(0.01, 0.9 * book)
    np.testing.assert_allclose(lrs(lr, range(50)), expected, rtol=1e-5)


def test_multi_factor_schedule_per_epoch():
    """PyTorch MultiStepLR(milestones=[15, 30], gamma=0.5) from 0.5: epochs 0-14 at 0.5, 15-29 at 0.25."""
    cfg = ScheduleConfig(name="multi_factor", per="epoch", gamma=0.5, milestones=(15, 30))
    lr = build_schedule(cfg, 0.5, 7, 40)
    epochs = np.arange(40)
    np.testing.assert_allclose(lrs(lr, epochs * 7 + 3), np.where(epochs < 15, 0.5, np.where(epochs < 30, 0.25, 0.125)))


def test_multi_factor_per_step_uses_epoch_milestones():
    lr = build_schedule(ScheduleConfig(name="multi_factor", gamma=0.1, milestones=(2,)), 1.0, 10, 5)
    np.testing.assert_allclose(lrs(lr, [0, 19, 20, 49]), [1.0, 1.0, 0.1, 0.1], rtol=1e-6)


def test_sqrt_schedule():
    """D2L 11.11: eta_t = 0.1 (t + 1)^(-1/2), t in epochs."""
    lr = build_schedule(ScheduleConfig(name="sqrt", per="epoch"), 0.1, 5, 30)
    t = np.arange(30)
    np.testing.assert_allclose(lrs(lr, t * 5), 0.1 * (t + 1.0) ** -0.5, rtol=1e-6)


def book_cosine(t, base=0.3, final=0.01, max_update=20, warmup=0):
    """The book's CosineScheduler (D2L 11.11)."""
    if t < warmup:
        return base * t / warmup
    if t <= max_update:
        return final + (base - final) * (1 + np.cos(np.pi * (t - warmup) / (max_update - warmup))) / 2
    return final


@pytest.mark.parametrize("warmup", [0, 5])
def test_cosine_with_warmup_matches_the_book(warmup):
    cfg = ScheduleConfig(name="cosine", per="epoch", final_fraction=0.01 / 0.3, warmup=warmup, length=20)
    lr = build_schedule(cfg, 0.3, 3, 30)
    t = np.arange(30)
    np.testing.assert_allclose(lrs(lr, t * 3 + 2), [book_cosine(e, warmup=warmup) for e in t], rtol=1e-5, atol=1e-7)


def test_schedule_lengths_are_validated():
    with pytest.raises(ValueError, match="warmup"):
        ScheduleConfig(name="cosine", warmup=5, length=5)
    with pytest.raises(ValueError, match="milestones"):
        ScheduleConfig(name="multi_factor", milestones=(30, 15))
