"""The fine-tuning experiment (D2L 13.2) end to end at a tiny size: pretraining on some classes,
then fine-tuned, from-scratch and frozen-body runs on an image folder of the others."""

import json

import jax
import numpy as np
import pytest

from dlrun.core.config import ConfigError, load_config
from dlrun.core.data import load_dataset
from dlrun.core.training.optimizers import build_optimizer
from dlrun.core.training.setup import build_setup, start_state
from dlrun.core.training.transfer import load_params, transplant
from dlrun.experiments import run_config

from .conftest import CONFIGS

# an MLP compiles in a fraction of a ResNet's time; the workflow does not depend on the model
TINY = ["model={name: mlp, hidden: [16]}", "experiment.head=dense1/*", "trainer.epochs=1", "data.batch_size=8", "optimizer.weight_decay=0",
        "experiment.pretrain={trainer.epochs: 1, data.batch_size: 32, optimizer.lr: 0.05}",
        "experiment.make_target={classes: [5, 6, 7], train_per_class: 8, valid_per_class: 4}",
        "experiment.source_classes=[0, 1, 2, 3]", "experiment.source_num_val=40"]


@pytest.fixture(scope="module")
def finished(fake_fmnist_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fine_tuning") / "run"
    cfg = load_config(CONFIGS / "fine_tuning_cpu.yaml", [*TINY, f"experiment.source_dir={fake_fmnist_dir}"])
    summary = run_config(cfg, run_dir, track=False)
    return run_dir, summary


def sub_config(run_dir, name):
    return load_config(run_dir / name / "config.yaml")


def test_it_writes_its_report(finished):
    run_dir, summary = finished
    for name in ("summary.json", "results.csv", "metrics.csv", "val_acc.png"):
        assert (run_dir / name).is_file(), name
    assert len(list((run_dir / "target/train/sandal").glob("*.png"))) == 8
    assert json.loads((run_dir / "summary.json").read_text())["fine_tuned_minus_scratch"] == pytest.approx(
        summary["fine_tuned/val/acc"] - summary["scratch/val/acc"])
    results = (run_dir / "results.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in results[1:]] == ["pretrain", "fine_tuned", "scratch", "frozen"]
    assert summary["num_target_train"] == 3 * 8 and summary["num_target_val"] == 3 * 4
    assert summary["target_classes"] == ["sandal", "shirt", "sneaker"]


def test_the_body_starts_as_pretrained_and_the_head_afresh(finished):
    run_dir, _ = finished
    cfg = sub_config(run_dir, "fine_tuned")
    assert cfg.init_from.exclude == ("dense1/*",)
    setup = build_setup(cfg, load_dataset(cfg.data, cfg.seed))
    fresh, _ = start_state(setup, jax.random.PRNGKey(cfg.seed))
    pretrained = load_params(run_dir / "pretrain")
    started, copied = transplant(fresh, pretrained, cfg.init_from.include, cfg.init_from.exclude)
    assert copied == ["dense0/b", "dense0/w"]
    for name in ("w", "b"):
        np.testing.assert_array_equal(started.params["dense0"][name], pretrained[f"params/dense0/{name}"])
        assert not np.array_equal(fresh.params["dense0"][name], pretrained[f"params/dense0/{name}"])
    # the new head: as initialised here (the source had 4 classes, the target 3), not the source's
    np.testing.assert_array_equal(started.params["dense1"]["w"], fresh.params["dense1"]["w"])
    assert pretrained["params/dense1/w"].shape[-1] == 4 and started.params["dense1"]["w"].shape[-1] == 3


def test_the_head_steps_ten_times_the_body(finished):
    """Plain SGD from the fine-tuned run's own optimizer config: update = -lr x scale x gradient."""
    run_dir, _ = finished
    cfg = sub_config(run_dir, "fine_tuned")
    params = {"dense0": {"w": np.ones((784, 16), np.float32)}, "dense1": {"w": np.ones((16, 3), np.float32)}}
    grads = jax.tree_util.tree_map(lambda p: np.full_like(p, 0.5), params)
    tx = build_optimizer(cfg.optimizer, steps_per_epoch=1, epochs=1)
    updates, _ = tx.update(grads, tx.init(params), params)
    body, head = -np.asarray(updates["dense0"]["w"]) / 0.5, -np.asarray(updates["dense1"]["w"]) / 0.5
    np.testing.assert_allclose(body, cfg.optimizer.lr, rtol=1e-6)
    np.testing.assert_allclose(head, 10 * cfg.optimizer.lr, rtol=1e-6)
    assert sub_config(run_dir, "scratch").optimizer.lr == pytest.approx(10 * cfg.optimizer.lr)
    assert sub_config(run_dir, "scratch").init_from is None


def test_a_frozen_body_ends_as_pretrained(finished):
    run_dir, _ = finished
    pretrained, frozen, tuned = (load_params(run_dir / n) for n in ("pretrain", "frozen", "fine_tuned"))
    body = [k for k in pretrained if k.startswith("params/") and not k.startswith("params/dense1/")]
    for k in body:
        np.testing.assert_array_equal(frozen[k], pretrained[k], err_msg=k)
    assert any(not np.array_equal(tuned[k], pretrained[k]) for k in body)  # fine-tuning moves the body
    assert body == ["params/dense0/b", "params/dense0/w"]


def test_mistakes_are_named(fake_fmnist_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"share \[5\]: the target must be another task"):
        cfg = load_config(CONFIGS / "fine_tuning_cpu.yaml", ["experiment.source_classes=[0, 5]"])
        run_config(cfg, tmp_path / "a", track=False)
    cfg = load_config(CONFIGS / "fine_tuning_cpu.yaml", ["experiment.pretrained=" + str(tmp_path / "nothing")])
    with pytest.raises(ConfigError, match="neither a run directory nor a state dict"):
        run_config(cfg, tmp_path / "b", track=False)
    cfg = load_config(CONFIGS / "fine_tuning_cpu.yaml", ["data={name: fashion_mnist}"])
    with pytest.raises(ConfigError, match="fine_tuning trains on an image folder"):
        run_config(cfg, tmp_path / "c", track=False)
