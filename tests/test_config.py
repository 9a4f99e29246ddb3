"""Config loading, inheritance, overrides and the promised error messages (through the CLI)."""

import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core import config as C

from .conftest import CONFIGS

runner = CliRunner()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def show(*args):
    return runner.invoke(app, ["show-config", *map(str, args)])


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "sweeps"), ids=lambda p: p.name
)
def test_every_shipped_config_validates_and_documents_itself(path):  # sweep files: test_sweep_spec
    C.load_config(path)
    header = C.header_comment(path)
    assert header and header[0].startswith("D2L"), "first comment line names the book section"
    assert any(line.startswith("Run: dlrun") for line in header), "a comment gives the command"


def test_defaults_fill_a_minimal_file(tmp_path):
    cfg = C.load_config(write(tmp_path, "c.yaml", "name: tiny\n"))
    assert cfg.model.name == "mlp" and cfg.model.hidden == (256,)
    assert cfg.optimizer.lr == 0.1 and cfg.data.name == "fashion_mnist" and cfg.trainer.epochs == 10


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path, "base.yaml", "name: b\noptimizer: {lr: 0.5, momentum: 0.9}\nmodel: {hidden: [64, 32]}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nname: c\noptimizer: {lr: 0.2}\n")
    cfg = C.load_config(child, ["trainer.epochs=3", "model.hidden=[512]"])
    assert cfg.name == "c"
    assert cfg.optimizer.lr == 0.2 and cfg.optimizer.momentum == 0.9  # deep merge keeps siblings
    assert cfg.model.hidden == (512,) and cfg.trainer.epochs == 3


def test_resolved_config_round_trips(tmp_path):
    cfg = C.load_config(CONFIGS / "mlp.yaml", ["optimizer.lr=0.05"])
    again = C.load_config(write(tmp_path, "r.yaml", C.to_yaml(cfg)))
    assert again == cfg


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(C.ConfigError, match="cycle"):
        C.load_config(tmp_path / "a.yaml")


def test_show_config_prints_the_resolved_config():
    result = show(CONFIGS / "mlp.yaml", "--set", "model.hidden=[512]")
    assert result.exit_code == 0, result.output
    assert "hidden:\n  - 512" in result.output and "lr: 0.1" in result.output


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("optimzer: {lr: 0.1}\n", [], ["optimzer: unknown key; did you mean 'optimizer'?"]),
        ("model: {hiden: [3]}\n", [], ["model.hiden: unknown key; did you mean 'model.hidden'?"]),
        ("model: {name: mamba}\n", [], ["unknown model 'mamba'", "linear_regression", "softmax_regression", "mlp"]),
        ("data: {name: cifar}\n", [], ["unknown data 'cifar'", "synthetic_regression", "fashion_mnist"]),
        ("loss: {name: focal}\n", [], ["loss.name", "squared_error", "cross_entropy"]),
        ("optimizer: {name: lion}\n", [], ["optimizer.name", "'sgd'", "'adam'"]),
        ("optimizer: {lr: fast}\n", [], ["optimizer.lr: expected a number", "found 'fast'"]),
        ("optimizer: {lr: -1}\n", [], ["optimizer.lr: expected a number above 0", "found -1"]),
        ("trainer: {epochs: 0}\n", [], ["trainer.epochs", "found 0"]),
        ("model: {dropout: 1.5}\n", [], ["model.dropout", "found 1.5"]),
        ("model: {activation: gelu}\n", [], ["model.activation", "'relu'", "found 'gelu'"]),
        ("data: {num_train: 10, batch_size: 64}\n", [], ["batch_size (64) is larger than data.num_train (10 examples)"]),
        ("name: x\n", ["optimizer.lr=abc"], ["--set optimizer.lr=abc: optimizer.lr: expected a number"]),
        ("name: x\n", ["optimizer.lrr=1"], ["--set optimizer.lrr=1", "did you mean 'optimizer.lr'?"]),
        ("name: x\n", ["optimizer.lr"], ["--set optimizer.lr: expected KEY=VALUE"]),
        ("name: x\n", ["name.x=1"], ["--set name.x=1: name is a value, not a section"]),
        ("", [], ["is empty"]),
        ("- 1\n- 2\n", [], ["expected a YAML mapping at the top level, found list"]),
        ("a: [1, 2\n", [], ["is not valid YAML", "line"]),
        ("base: nowhere.yaml\n", [], ["base: no such file"]),
    ],
)
def test_config_errors_name_file_key_expected_and_found(tmp_path, text, overrides, expected):
    path = write(tmp_path, "bad.yaml", text)
    args = [path] + [a for o in overrides for a in ("--set", o)]
    result = show(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in result.output, result.output
    if not overrides:
        assert str(path) in result.output


def test_missing_file_is_exit_2():
    result = show("no/such/config.yaml")
    assert result.exit_code == 2 and "no/such/config.yaml: no such config file" in result.output


def test_config_names_match_the_registries():
    """The names config.py accepts (without importing JAX) are exactly the registries' names."""
    from dlrun.core.data import DATASETS
    from dlrun.core.nn.layers import ACTIVATIONS
    from dlrun.core.nn.losses import LOSSES
    from dlrun.core.nn.models import MODELS, WEIGHT_INITS
    from dlrun.core.training.optimizers import OPTIMIZERS, SCHEDULES

    def tags(union):
        return {m.model_fields["name"].default for m in typing.get_args(typing.get_args(union)[0])}

    def literal(model, field):
        return set(typing.get_args(model.model_fields[field].annotation))

    assert tags(C.DataConfig) == set(DATASETS)
    assert tags(C.ModelConfig) == set(MODELS)
    assert literal(C.LossConfig, "name") == set(LOSSES)
    assert literal(C.OptimizerConfig, "name") == set(OPTIMIZERS)
    assert literal(C.ScheduleConfig, "name") == set(SCHEDULES)
    assert literal(C.MLPModel, "activation") == set(ACTIVATIONS)
    assert literal(C.MLPModel, "init") == set(WEIGHT_INITS)
