"""Sweep files: validation (with the same error quality as configs) and expansion into trials."""

import math

import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import ConfigError
from dlrun.core.sweep.spec import (
    SweepSpec,
    expand,
    parse_distribution,
    read_spec,
    split_values,
    trial_config,
)

from .conftest import CONFIGS

runner = CliRunner()


def write_sweep(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(f"base: {CONFIGS / 'softmax.yaml'}\n" + text)
    return path


def test_grid_is_the_product_in_order_times_seeds(tmp_path):
    spec, _ = read_spec(write_sweep(tmp_path, "parameters:\n  optimizer.lr: [0.1, 0.5]\n  model.init_scale: [0.01, 0.1, 1.0]\nseeds: 2\n"))
    trials = expand(spec, "s.yaml", base_seed=5)
    assert len(trials) == 2 * 3 * 2
    assert [t.params for t in trials[:4]] == [{"optimizer.lr": 0.1, "model.init_scale": 0.01}] * 2 + [
        {"optimizer.lr": 0.1, "model.init_scale": 0.1}
    ] * 2
    assert [t.seed for t in trials[:4]] == [5, 6, 5, 6]
    assert [t.index for t in trials] == list(range(12))
    assert len({t.dirname for t in trials}) == 12  # every trial gets its own directory


def test_random_search_is_reproducible_and_within_bounds(tmp_path):
    text = (
        "parameters:\n  optimizer.lr: loguniform(1e-3, 1)\n  optimizer.momentum: uniform(0, 0.9)\n"
        "  trainer.epochs: randint(1, 4)\n  optimizer.name: choice(sgd, adam)\n  model.init: [normal, xavier]\n"
        "trials: 200\nsample_seed: 7\n"
    )
    spec, _ = read_spec(write_sweep(tmp_path, text))
    a, b = expand(spec, "s"), expand(spec, "s")
    assert [t.params for t in a] == [t.params for t in b]
    other = expand(spec.model_copy(update={"sample_seed": 8}), "s")
    assert [t.params for t in a] != [t.params for t in other]
    lrs = [t.params["optimizer.lr"] for t in a]
    assert all(1e-3 <= lr <= 1 for lr in lrs)
    # log-uniform: about half of the draws below the geometric midpoint sqrt(1e-3 * 1)
    assert 0.35 < sum(lr < math.sqrt(1e-3) for lr in lrs) / len(lrs) < 0.65
    assert all(0 <= t.params["optimizer.momentum"] <= 0.9 for t in a)
    assert {t.params["trainer.epochs"] for t in a} == {1, 2, 3}
    assert {t.params["optimizer.name"] for t in a} == {"sgd", "adam"}
    assert {t.params["model.init"] for t in a} == {"normal", "xavier"}  # a list is a choice in random search


def test_split_values_keeps_brackets_together():
    assert split_values("0.01,0.1, 0.5") == [0.01, 0.1, 0.5]
    assert split_values("[128],[256, 128]") == [[128], [256, 128]]
    assert split_values("relu,tanh") == ["relu", "tanh"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("normal(0, 1)", "expected a list of values or one of"),
        ("uniform(1)", "takes two numbers"),
        ("uniform(2, 1)", "needs low < high"),
        ("loguniform(0, 1)", "needs low > 0"),
        ("randint(0.5, 3)", "takes integers"),
    ],
)
def test_bad_distributions_say_what_is_wrong(text, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        parse_distribution(text, "s.yaml: parameters.optimizer.lr")
    assert "s.yaml: parameters.optimizer.lr" in str(err.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("parameter:\n  optimizer.lr: [0.1]\n", "s.yaml: parameter: unknown key"),  # did you mean parameters
        ("parameters:\n  optimizer.lr: loguniform(1e-3, 1)\n", "needs `trials: N`"),
        ("parameters:\n  optimizer.lr: [0.1]\ntrials: 3\n", "only a random search takes `trials`"),
        ("parameters:\n  optimizer.lr: []\n", "expected a non-empty list"),
        ("parameters:\n  optimizer.lr: [0.1]\nseeds: 0\n", "seeds"),
        ("parameters:\n  optimizer.lr: [0.1]\nscheduler: {name: halving, eta: 1}\n", "scheduler.eta"),
    ],
)
def test_bad_sweep_files_name_the_file_and_key(tmp_path, text, expected):
    path = write_sweep(tmp_path, text)
    with pytest.raises(ConfigError, match=expected.replace("`", "`").replace("(", r"\(")) as err:
        spec, _ = read_spec(path)
        expand(spec, str(path))
    assert str(path) in str(err.value) or "s.yaml" in str(err.value)


def test_an_unknown_key_suggests_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'parameters'"):
        read_spec(write_sweep(tmp_path, "parameter:\n  optimizer.lr: [0.1]\n"))


def test_a_parameter_the_config_does_not_have_is_named(tmp_path):
    path = write_sweep(tmp_path, "parameters:\n  optimizer.lrr: [0.1]\n")
    spec, base = read_spec(path)
    with pytest.raises(ConfigError) as err:
        trial_config(base, spec, expand(spec, str(path))[0], [], str(path))
    message = str(err.value)
    assert str(path) in message and "optimizer.lrr" in message and "did you mean 'optimizer.lr'" in message


def test_an_invalid_value_names_the_trial(tmp_path):
    path = write_sweep(tmp_path, "parameters:\n  optimizer.lr: [0.1, -1]\n")
    spec, base = read_spec(path)
    bad = expand(spec, str(path))[1]
    with pytest.raises(ConfigError, match=r"optimizer.lr=-1.*a number above 0"):
        trial_config(base, spec, bad, [], str(path))


def test_cli_dry_run_lists_trials_and_groups_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["sweep", str(CONFIGS / "mlp.yaml"), "--grid", "optimizer.lr=0.01,0.1", "--grid", "model.hidden=[16],[32]", "--seeds", "2", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "8 trials in 2 group(s)" in result.output  # hidden sizes change shapes: two groups
    assert "model.hidden=16" in result.output and "seed=1" in result.output
    assert not (tmp_path / "outputs").exists()


def test_cli_sweep_errors_exit_2_without_traceback(tmp_path):
    for args, expected in [
        (["sweep", str(CONFIGS / "mlp.yaml")], "say what to vary"),
        (["sweep", str(CONFIGS / "mlp.yaml"), "--grid", "optimizer.lr"], "expected KEY=V1,V2"),
        (["sweep", str(CONFIGS / "mlp.yaml"), "--random", "optimizer.lr=gauss(0,1)"], "expected a list of values or one of"),
        (["sweep", str(CONFIGS / "mlp.yaml"), "--grid", "optimizer.lr=0.1", "--executor", "slurm"], "expected 'local' or 'ray'"),
        (["sweep", "--resume", str(tmp_path)], "not a sweep directory"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output


def test_every_sweep_config_in_the_repository_expands(tmp_path):
    from dlrun.core.sweep.plan import resolve

    paths = sorted((CONFIGS / "sweeps").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"softmax_lr", "mlp_lr_hidden", "weight_decay", "mlp_random"}
    for path in paths:
        spec, base = read_spec(path)
        trials, configs = resolve(spec, base, [], str(path))
        assert len(trials) == len(configs) > 1
        assert path.read_text().startswith("# D2L") and "# Run: dlrun sweep configs/sweeps/" in path.read_text()


def test_spec_defaults():
    spec = SweepSpec(base="x.yaml", parameters={"optimizer.lr": [0.1]})
    assert spec.seeds == 1 and spec.vectorize and spec.scheduler is None and not spec.trial_plots
