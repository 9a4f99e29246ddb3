"""Vectorised trials: a trial trained inside a group gives the metrics of the same trial alone."""

import numpy as np
import pandas as pd
import pytest

from dlrun.core.config import load_config
from dlrun.core.report.progress import make_reporter
from dlrun.core.sweep.groups import group_key
from dlrun.core.training.train import train
from dlrun.core.training.vectorised import choose_mode, make_layout, train_group

from .conftest import CONFIGS

METRICS = ["train/loss", "train/acc", "val/loss", "val/acc"]


def fmnist_cfg(fake_dir, *overrides):
    return load_config(
        CONFIGS / "mlp.yaml",
        [f"data.dir={fake_dir}", "data.batch_size=32", "model.hidden=[24]", "trainer.epochs=3", "trainer.progress=none", *overrides],
    )


def alone(cfg, run_dir) -> pd.DataFrame:
    """The trial trained by itself, with the generic loop."""
    train(cfg, run_dir, reporter=make_reporter("none", 0, ""))
    return pd.read_csv(run_dir / "metrics.csv")


def test_group_key_separates_structure_from_state_values():
    base = load_config(CONFIGS / "mlp.yaml")
    same = [
        ["optimizer.lr=0.5"], ["seed=3"], ["model.init=xavier"], ["model.init_scale=0.1"], ["name=other"],
    ]
    for overrides in same:
        assert group_key(load_config(CONFIGS / "mlp.yaml", overrides)) == group_key(base), overrides
    with_dropout = load_config(CONFIGS / "mlp.yaml", ["model.dropout=0.2"])
    assert group_key(load_config(CONFIGS / "mlp.yaml", ["model.dropout=0.5"])) == group_key(with_dropout)
    different = [["model.hidden=[128]"], ["data.batch_size=128"], ["optimizer.momentum=0.9"], ["model.dropout=0.2"],
                 ["optimizer.name=adam"], ["trainer.epochs=3"], ["loss.l2_penalty=0.1"], ["model.activation=tanh"]]
    for overrides in different:
        assert group_key(load_config(CONFIGS / "mlp.yaml", overrides)) != group_key(base), overrides


def test_auto_mode_vectorises_small_models_on_a_cpu():
    assert choose_mode({"w": np.zeros((784, 10))}, "cpu") == "vmap"
    assert choose_mode({"w": np.zeros((784, 256)), "w2": np.zeros((256, 10))}, "cpu") == "serial"
    assert choose_mode({"w": np.zeros((784, 256))}, "gpu") == "vmap"


def test_layout_pads_rows_that_share_a_seed():
    layout = make_layout([0, 1, 2, 3, 4], seeds=[7, 7, 7, 9, 9])
    assert layout.rows == [[0, 1, 2], [3, 4, 4]]
    assert layout.first_slot() == {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (1, 0), 4: (1, 1)}


@pytest.mark.parametrize("mode", ["vmap", "serial"])
def test_vectorised_trials_equal_the_same_trials_alone(fake_fmnist_dir, tmp_path, mode):
    """Learning rate, momentum, weight decay, dropout rate, seed and init differ across the
    group; an unbalanced seed count exercises the padded layout."""
    variants = [
        ["optimizer.lr=0.05", "seed=0"],
        ["optimizer.lr=0.2", "seed=0", "optimizer.momentum=0.5", "optimizer.weight_decay=0.01"],
        ["optimizer.lr=0.1", "seed=1", "optimizer.momentum=0.9", "optimizer.weight_decay=0.001"],
    ]
    common = ["model.dropout=0.3", "optimizer.momentum=0.1", "optimizer.weight_decay=0.0001", "optimizer.clip_norm=5"]
    cfgs = [fmnist_cfg(fake_fmnist_dir, *common, *v) for v in variants]
    cfgs.append(fmnist_cfg(fake_fmnist_dir, *common, "optimizer.lr=0.1", "seed=0", "model.dropout=0.1", "model.init=he"))
    outcomes = train_group(cfgs, [tmp_path / f"v{i}" for i in range(len(cfgs))], mode=mode)
    assert [o.status for o in outcomes] == ["done"] * 4
    assert outcomes[0].summary["loop"] == {"vmap": "vectorised", "serial": "shared-program"}[mode]
    for i, cfg in enumerate(cfgs):
        vec = pd.read_csv(tmp_path / f"v{i}" / "metrics.csv")
        single = alone(cfg, tmp_path / f"s{i}")
        np.testing.assert_allclose(vec[METRICS].to_numpy(), single[METRICS].to_numpy(), rtol=2e-4, atol=2e-5, err_msg=str(i))
    # the trials really differ (the test would pass vacuously if they all trained the same model)
    finals = [pd.read_csv(tmp_path / f"v{i}" / "metrics.csv")["train/loss"].iloc[-1] for i in range(4)]
    assert len({round(f, 4) for f in finals}) == 4


def test_seed_dependent_data_is_stacked_per_row(tmp_path):
    """Synthetic regression draws its data from the seed: each seed's trials get their own data."""
    cfgs = [
        load_config(CONFIGS / "linreg.yaml", [f"optimizer.lr={lr}", f"seed={s}", "trainer.epochs=2", "data.num_train=200"])
        for lr in (0.01, 0.03) for s in (0, 1, 2)
    ]
    outcomes = train_group(cfgs, [tmp_path / f"v{i}" for i in range(len(cfgs))])
    assert all(o.status == "done" for o in outcomes)
    for i, cfg in enumerate(cfgs):
        vec = pd.read_csv(tmp_path / f"v{i}" / "metrics.csv")
        single = alone(cfg, tmp_path / f"s{i}")
        np.testing.assert_allclose(vec[["train/loss", "val/loss"]], single[["train/loss", "val/loss"]], rtol=1e-4)
        assert outcomes[i].summary["w_error"] == pytest.approx(
            __import__("json").loads((tmp_path / f"s{i}" / "summary.json").read_text())["w_error"], rel=1e-3, abs=1e-6
        )


@pytest.mark.parametrize("mode", ["vmap", "serial"])
def test_a_diverging_trial_fails_alone_and_the_group_shrinks(tmp_path, mode):
    cfgs = [load_config(CONFIGS / "linreg.yaml", [f"optimizer.lr={lr}", "trainer.epochs=4", "data.num_train=200", f"seed={s}"])
            for lr, s in ((0.03, 0), (40.0, 0), (0.01, 1))]
    events = []
    outcomes = train_group(cfgs, [tmp_path / f"v{i}" for i in range(3)], on_event=lambda *e: events.append(e), mode=mode)
    assert [o.status for o in outcomes] == ["done", "failed", "done"]
    assert "non-finite" in outcomes[1].error and "optimizer.lr" in outcomes[1].error
    assert events[0][:2] == (1, "failed")  # reported when it happened, before the others ended
    for i in (0, 2):  # the survivors still match their runs alone after the group shrank
        vec = pd.read_csv(tmp_path / f"v{i}" / "metrics.csv")
        single = alone(cfgs[i], tmp_path / f"s{i}")
        np.testing.assert_allclose(vec[["train/loss", "val/loss"]], single[["train/loss", "val/loss"]], rtol=1e-4)


def test_stop_and_continue_equals_one_go(fake_fmnist_dir, tmp_path):
    """Successive halving trains rung by rung: stopping at epoch 1 and going on from the
    checkpoints must give what training straight through gives."""
    cfgs = [fmnist_cfg(fake_fmnist_dir, f"optimizer.lr={lr}", "model.dropout=0.2") for lr in (0.05, 0.1)]
    dirs = [tmp_path / f"r{i}" for i in range(2)]
    first = train_group(cfgs, dirs, stop_epoch=1)
    assert [o.status for o in first] == ["stopped", "stopped"]
    assert [o.status for o in train_group(cfgs, dirs)] == ["done", "done"]
    straight = [tmp_path / f"t{i}" for i in range(2)]
    train_group(cfgs, straight)
    for a, b in zip(dirs, straight):
        pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv")[METRICS], pd.read_csv(b / "metrics.csv")[METRICS])


def test_the_state_keys_are_the_hyperparameters_the_optimizer_keeps_in_its_state():
    """A sweep groups trials by what is not state (`group_key`); what is state is decided where
    the optimizer injects it, so the two cannot drift apart."""
    import jax.numpy as jnp

    from dlrun.core.config import OptimizerConfig
    from dlrun.core.sweep.groups import STATE_KEYS
    from dlrun.core.training.optimizers import build_optimizer

    cfg = load_config(CONFIGS / "mlp.yaml", ["optimizer.clip_norm=1.0", "optimizer.momentum=0.9"]).optimizer
    state = build_optimizer(cfg, 10, 2).init({"w": jnp.zeros(3)})
    assert set(state.hyperparams) == set(OptimizerConfig.IN_STATE)
    assert {f"optimizer.{k}" for k in OptimizerConfig.IN_STATE} <= set(STATE_KEYS)
    lr_only = [load_config(CONFIGS / "mlp.yaml", [f"optimizer.{k}={v}"]) for k, v in
               (("lr", 0.3), ("momentum", 0.5), ("weight_decay", 0.1), ("clip_norm", 2.0))]
    with_all = [load_config(CONFIGS / "mlp.yaml", [f"optimizer.{k}={v}"]) for k, v in
                (("lr", 0.5), ("momentum", 0.7), ("weight_decay", 0.2), ("clip_norm", 3.0))]
    for a, b in zip(lr_only, with_all):  # values in the state: the same group
        assert group_key(a) == group_key(b)
