"""Language models through the one trainer (D2L 9.5-10.4): perplexity in the metrics, a model
that learns a short text by heart and continues it, hidden states carried with sequential
partitioning (reset each epoch, checkpointed, resumed), and partial batches."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import Config
from dlrun.core.data import load_dataset
from dlrun.core.training.setup import build_setup, start_state, train_arrays
from dlrun.core.training.state import take
from dlrun.core.training.train import train

TEXT = "the time machine " * 40


def lm_config(tmp_path, data=None, model=None, **rest):
    f = tmp_path / "text.txt"
    f.write_text(TEXT)
    raw = {
        "name": "tiny_lm",
        "data": {"name": "time_machine", "file": str(f), "num_steps": 8, "num_train": 200, "num_val": 60,
                 "batch_size": 50, "prefix": "the time", "predict_tokens": 17, **(data or {})},
        "model": {"name": "rnn_lm", "cell": "gru", "impl": "fused", "hidden": 32, "init": "uniform", **(model or {})},
        "optimizer": {"name": "adam", "lr": 0.02, "clip_norm": 1.0},
        "trainer": {"epochs": 40, "progress": "none"},
    } | rest
    return Config.model_validate(raw)


def test_a_tiny_language_model_learns_its_text_by_heart(tmp_path):
    cfg = lm_config(tmp_path)
    result = train(cfg, tmp_path / "run", plot=False)
    last = result.rows[-1]
    assert last["train/ppl"] < 1.1 and last["val/ppl"] < 1.1, last
    assert result.rows[0]["train/ppl"] > 5
    for split in ("train", "val"):
        assert math.isclose(last[f"{split}/ppl"], math.exp(last[f"{split}/loss"]), rel_tol=1e-5)
    sample = json.loads((tmp_path / "run" / "summary.json").read_text())["sample"]
    assert sample["text"] == "the time machine the time", sample  # 17 characters after the prefix
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "train/ppl" in header and "val/ppl" in header
    # dlrun predict continues any prefix from the last checkpoint, and refuses other kinds' options
    from typer.testing import CliRunner

    from dlrun.cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["predict", str(tmp_path / "run"), "--prefix", "machine", "--tokens", "9"])
    assert out.exit_code == 0 and out.output.strip() == "machine the time", out.output
    wrong = runner.invoke(app, ["predict", str(tmp_path / "run"), "--val", "4"])
    assert wrong.exit_code == 2 and "language model run" in wrong.output and "--val" in wrong.output


def sequential_config(tmp_path, **trainer):
    return lm_config(tmp_path, data={"sampling": "sequential", "max_tokens": 400, "num_steps": 5, "batch_size": 4,
                                     "num_val": 20},
                     model={"cell": "rnn", "impl": "scratch", "hidden": 8, "init": "normal", "init_scale": 0.3},
                     trainer={"epochs": 3, "progress": "none", **trainer})


def test_sequential_partitioning_carries_the_state_and_resumes_bit_identically(tmp_path):
    cfg = sequential_config(tmp_path)
    straight = train(cfg, tmp_path / "straight", plot=False)
    carry = straight.state.model_state["rnn0"]["carry"]
    assert carry.shape == (4, 8) and float(jnp.abs(carry).max()) > 0, "the state is carried in the model state"
    train(cfg, tmp_path / "stopped", plot=False, stop_epoch=2)
    resumed = train(cfg, tmp_path / "stopped", plot=False, resume=True)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed.rows) == strip(straight.rows)
    # random partitioning starts every batch afresh: no carried state at all
    rand = lm_config(tmp_path, data={"sampling": "random", "max_tokens": 400, "num_steps": 5, "batch_size": 4})
    assert build_setup(rand, load_dataset(rand.data, 0)).model.init(jax.random.PRNGKey(0))[1] == {}


def test_the_carried_state_is_reset_at_each_epochs_first_step(tmp_path):
    cfg = sequential_config(tmp_path)
    data = load_dataset(cfg.data, 0)
    setup = build_setup(cfg, data)
    state, keys = start_state(setup, jax.random.PRNGKey(0))
    batch = take(train_arrays(data), setup.order(keys["order"], 0)[0])
    with_carry = lambda s, step: s._replace(step=jnp.int32(step), model_state={"rnn0": {"carry": s.model_state["rnn0"]["carry"] + 0.5}})  # noqa: E731
    loss = lambda s: float(setup.train_step(s, batch, keys["step"])[1]["loss"])  # noqa: E731
    n = setup.steps_per_epoch
    assert n > 2
    fresh = loss(state._replace(step=jnp.int32(2 * n)))
    assert loss(with_carry(state, 2 * n)) == fresh, "an epoch's first step starts from zero"
    assert loss(with_carry(state, 2 * n + 1)) != fresh, "later steps start from the carried state"


def test_the_padding_of_a_partial_batch_counts_for_nothing(tmp_path):
    cfg = lm_config(tmp_path, data={"num_train": 130, "batch_size": 50})
    data = load_dataset(cfg.data, 0)
    setup = build_setup(cfg, data)
    assert setup.steps_per_epoch == 3, "130 windows in batches of 50: two whole batches and one of 30"
    state, keys = start_state(setup, jax.random.PRNGKey(0))
    order = np.asarray(setup.order(keys["order"], 0))
    assert (order[-1] < 0).sum() == 20
    arrays = train_arrays(data)
    padded = take(arrays, jnp.asarray(order[-1]))
    real = take(arrays, jnp.asarray(order[-1][:30]))
    s1, m1 = jax.jit(setup.train_step)(state, padded, keys["step"])
    s2, m2 = jax.jit(setup.train_step)(state, real, keys["step"])
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(s1.params), jax.tree_util.tree_leaves(s2.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_batch_too_large_for_the_partitioning_is_a_clear_error(tmp_path):
    from dlrun.core.errors import ConfigError

    cfg = lm_config(tmp_path, data={"sampling": "sequential", "max_tokens": 100, "num_steps": 10, "batch_size": 20})
    with pytest.raises(ConfigError, match="no whole batch"):
        build_setup(cfg, load_dataset(cfg.data, 0))


def test_a_sweep_over_language_models_ranks_them_by_validation_perplexity(tmp_path):
    import pandas as pd
    import yaml
    from typer.testing import CliRunner

    from dlrun.cli.main import app

    base = lm_config(tmp_path, trainer={"epochs": 3, "progress": "none"})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base.model_dump(mode="json")))
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {tmp_path / 'base.yaml'}\nparameters:\n  optimizer.lr: [0.0003, 0.03]\n")
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert "best val/ppl" in df.columns and "best val/acc" not in df.columns  # the target metric
    best = df.loc[df["final val/ppl"].idxmin(), "optimizer.lr"]
    assert best == 0.03 and "best: optimizer.lr=0.03" in result.output  # lower perplexity is better


@pytest.mark.parametrize("impl", ["scratch", "fused"])
def test_an_lstm_carries_both_its_states_across_batches(tmp_path, impl):
    cfg = sequential_config(tmp_path, epochs=2)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"cell": "lstm", "impl": impl})})
    result = train(cfg, tmp_path / "run", plot=False)
    h, c = result.state.model_state["lstm0"]["carry"]
    assert h.shape == c.shape == (4, 8) and not np.allclose(h, c)
    assert result.rows[-1]["train/loss"] < result.rows[0]["train/loss"]
