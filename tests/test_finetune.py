"""Fine-tuning (D2L 13.2): a run starts from another run's parameters by path, with a new head;
parameter groups train at their own learning rate (optax.multi_transform) or stay frozen."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import ConfigError, load_config
from dlrun.core.data import load_dataset
from dlrun.core.report.progress import make_reporter
from dlrun.core.training.optimizers import build_optimizer
from dlrun.core.training.setup import build_setup, start_state
from dlrun.core.training.train import train
from dlrun.core.training.transfer import load_params, named_arrays, transplant

from .conftest import CONFIGS


def mlp(fake_dir, *overrides):
    return load_config(CONFIGS / "mlp.yaml", [f"data.dir={fake_dir}", "data.batch_size=32", "model.hidden=[16]",
                                              "trainer.epochs=2", "trainer.progress=none", *overrides])


@pytest.fixture(scope="module")
def pretrained(fake_fmnist_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("pretrain") / "run"
    result = train(mlp(fake_fmnist_dir), run, plot=False, reporter=make_reporter("none", 0, ""))
    return run, result


def test_a_finished_run_leaves_its_parameters_by_name(pretrained):
    run, result = pretrained
    named = load_params(run)
    assert sorted(named) == ["params/dense0/b", "params/dense0/w", "params/dense1/b", "params/dense1/w"]
    np.testing.assert_array_equal(named["params/dense0/w"], np.asarray(result.state.params["dense0"]["w"]))


def test_init_from_copies_the_body_and_initialises_the_head_afresh(pretrained, fake_fmnist_dir, tmp_path):
    run, result = pretrained
    cfg = mlp(fake_fmnist_dir, f"init_from.run={run}", "init_from.exclude=[dense1/*]", "seed=5")
    fresh = train(cfg.model_copy(update={"init_from": None}), tmp_path / "fresh", plot=False, stop_epoch=1,
                  reporter=make_reporter("none", 0, ""))
    setup = build_setup(cfg, load_dataset(cfg.data, cfg.seed))
    state, _ = start_state(setup, jax.random.PRNGKey(cfg.seed))
    moved, copied = transplant(state, load_params(run), cfg.init_from.include, cfg.init_from.exclude)
    assert copied == ["dense0/b", "dense0/w"]
    np.testing.assert_array_equal(moved.params["dense0"]["w"], result.state.params["dense0"]["w"])
    np.testing.assert_array_equal(moved.params["dense1"]["w"], state.params["dense1"]["w"])  # as initialised
    assert not np.array_equal(moved.params["dense0"]["w"], state.params["dense0"]["w"])
    assert fresh.summary["epochs"] == 1


def test_a_frozen_body_ends_as_it_started_and_the_head_learns(pretrained, fake_fmnist_dir, tmp_path):
    run, result = pretrained
    cfg = mlp(fake_fmnist_dir, f"init_from.run={run}", "init_from.exclude=[dense1/*]", "optimizer.momentum=0.9",
              "optimizer.groups=[{params: dense0/*, freeze: true}]")
    tuned = train(cfg, tmp_path / "tuned", plot=False, reporter=make_reporter("none", 0, ""))
    after = load_params(tmp_path / "tuned")
    np.testing.assert_array_equal(after["params/dense0/w"], np.asarray(result.state.params["dense0"]["w"]))
    np.testing.assert_array_equal(after["params/dense0/b"], np.asarray(result.state.params["dense0"]["b"]))
    assert tuned.rows[-1]["train/loss"] < tuned.rows[0]["train/loss"]
    # no momentum is kept for the frozen parameters: only the head's trace is in the state
    traces = [leaf.shape for leaf in jax.tree_util.tree_leaves(tuned.state.opt_state) if getattr(leaf, "ndim", 0) == 2]
    assert traces == [(16, 10)]


def test_a_group_trains_at_its_multiple_of_the_learning_rate():
    """Plain SGD: each update is -lr x scale x gradient, the book's 10x for the head."""
    cfg = load_config(CONFIGS / "mlp.yaml", ["optimizer.lr=0.05", "optimizer.groups=[{params: head/*, lr_scale: 10}]"]).optimizer
    params = {"body": {"w": jnp.ones((3, 2))}, "head": {"w": jnp.ones((2, 1)), "b": jnp.zeros(1)}}
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.3), params)
    tx = build_optimizer(cfg, steps_per_epoch=1, epochs=1)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["body"]["w"], -0.05 * 0.3, rtol=1e-6)
    np.testing.assert_allclose(updates["head"]["w"], -0.5 * 0.3, rtol=1e-6)
    np.testing.assert_allclose(updates["head"]["b"], -0.5 * 0.3, rtol=1e-6)


def test_mistakes_name_what_is_wrong(pretrained, fake_fmnist_dir, tmp_path):
    run, _ = pretrained
    other_head = mlp(fake_fmnist_dir, f"init_from.run={run}", "model.hidden=[8]")
    with pytest.raises(ConfigError, match=r"other shapes: dense0/b \(\(16,\) there, \(8,\) here\)"):
        train(other_head, tmp_path / "a", plot=False, reporter=make_reporter("none", 0, ""))
    with pytest.raises(ConfigError, match=r"holds no params.npz"):
        train(mlp(fake_fmnist_dir, f"init_from.run={tmp_path}"), tmp_path / "b", plot=False, reporter=make_reporter("none", 0, ""))
    with pytest.raises(ConfigError, match=r"optimizer.groups: 'head/\*' matches no parameter; the paths are: dense0/b"):
        train(mlp(fake_fmnist_dir, "optimizer.groups=[{params: head/*}]"), tmp_path / "c", plot=False,
              reporter=make_reporter("none", 0, ""))
    cfg = mlp(fake_fmnist_dir)
    state, _ = start_state(build_setup(cfg, load_dataset(cfg.data, 0)), jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="copy no parameter"):
        transplant(state, load_params(run), ("nothing/*",), ())
    assert sorted(named_arrays(state)) == sorted(load_params(run))
