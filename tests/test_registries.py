"""The registries and the config schema agree, and every registered optimizer, schedule and
loss trains.

`core.config.schema` spells the accepted names as Literals (without importing JAX); the
registries in `core.nn`, `core.data` and `core.training` hold the implementations. A name in
one but not the other would be a config that validates and then crashes, or an implementation
no config can reach. Each optimizer and loss is then trained for a few epochs on small data to
show that it actually lowers the training loss, and a name that does not exist is a
`ConfigError` that lists the valid ones.
"""

import re
import typing

import numpy as np
import pytest

from dlrun.core import config as C
from dlrun.core.config import load_config
from dlrun.core.data import DATASETS, Dataset
from dlrun.core.errors import ConfigError
from dlrun.core.nn.init import WEIGHT_INITS
from dlrun.core.nn.layers import ACTIVATIONS
from dlrun.core.nn.losses import LOSSES
from dlrun.core.nn.models import MODELS
from dlrun.core.nn.rnn import RNN_INITS
from dlrun.core.nn.transformer import TRANSFORMER_INITS
from dlrun.core.training.optimizers import OPTIMIZERS, SCHEDULES
from dlrun.core.training.train import train

# ------------------------------------------------------------------- names, both ways


def union_members(union) -> tuple[type, ...]:
    """The section classes of a tagged union (`Annotated[Union[...], Field(discriminator=...)]`)."""
    return typing.get_args(typing.get_args(union)[0])


def tags(union) -> list[str]:
    """Every `name` a tagged union accepts, one per member (a list, so duplicates show)."""
    out = []
    for member in union_members(union):
        names = typing.get_args(member.model_fields["name"].annotation)
        assert names == (member.model_fields["name"].default,), member  # one Literal name, and it is the default
        out += names
    return out


def literal(model, field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


def assert_same_names(config_names, registry, what):
    config_names, registry_names = set(config_names), set(registry)
    assert not config_names - registry_names, f"{what}: the config accepts names with no implementation"
    assert not registry_names - config_names, f"{what}: implementations no config can name"


def test_data_and_model_tags_are_the_registries():
    assert len(tags(C.DataConfig)) == len(set(tags(C.DataConfig)))
    assert len(tags(C.ModelConfig)) == len(set(tags(C.ModelConfig)))
    assert_same_names(tags(C.DataConfig), DATASETS, "data.name")
    assert_same_names(tags(C.ModelConfig), MODELS, "model.name")


@pytest.mark.parametrize(
    "section, field, registry",
    [
        (C.LossConfig, "name", LOSSES),
        (C.OptimizerConfig, "name", OPTIMIZERS),
        (C.ScheduleConfig, "name", SCHEDULES),
    ],
    ids=["loss", "optimizer", "schedule"],
)
def test_literal_names_are_the_registries(section, field, registry):
    assert_same_names(literal(section, field), registry, f"{section.__name__}.{field}")
    assert section.model_fields[field].default in registry


def test_every_model_activation_and_init_is_registered():
    """Every model section that takes an activation or an initialiser accepts exactly the
    registered ones."""
    with_activation = [m for m in union_members(C.ModelConfig) if "activation" in m.model_fields]
    with_init = [m for m in union_members(C.ModelConfig) if "init" in m.model_fields]
    assert {m.__name__ for m in with_activation} >= {"MLPModel", "LeNetModel"}
    assert {m.__name__ for m in with_init} >= {"LinearRegressionModel", "SoftmaxRegressionModel", "MLPModel", "LeNetModel"}
    for model in with_activation:
        assert_same_names(literal(model, "activation"), ACTIVATIONS, f"{model.__name__}.activation")
        assert model.model_fields["activation"].default in ACTIVATIONS
    # recurrent models and the Transformer initialise weights and biases together
    own = {"RNNLMModel": RNN_INITS, "Seq2SeqModel": RNN_INITS, "BahdanauModel": RNN_INITS, "TransformerModel": TRANSFORMER_INITS}
    for model in with_init:
        registry = own.get(model.__name__, WEIGHT_INITS)
        assert_same_names(literal(model, "init"), registry, f"{model.__name__}.init")
        assert model.model_fields["init"].default in registry


def test_the_schema_imports_no_jax():
    """The reason the names are spelled twice: `core.config` must not pull in JAX."""
    import subprocess
    import sys

    code = "import sys, dlrun.core.config; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ every one trains

BASE_YAML = """\
name: registry
seed: 0
data: {name: synthetic_regression, num_train: 200, num_val: 50, batch_size: 20}
model: {name: linear_regression}
loss: {name: squared_error}
optimizer: {name: sgd, lr: 0.03}
trainer: {epochs: 4, progress: none, checkpoint_every: 0}
"""


def config(tmp_path, overrides):
    path = tmp_path / "base.yaml"
    path.write_text(BASE_YAML)
    return load_config(path, overrides)


def classification_data(seed=0, n_train=200, n_val=50, features=4, classes=3) -> Dataset:
    """Gaussian blobs, one per class: learnable by a linear model."""
    r = np.random.default_rng(seed)
    centres = r.normal(size=(classes, features)) * 3

    def draw(n):
        y = r.integers(0, classes, n)
        return (centres[y] + r.normal(size=(n, features))).astype(np.float32), y.astype(np.int32)

    (x_train, y_train), (x_val, y_val) = draw(n_train), draw(n_val)
    return Dataset(x_train, y_train, x_val, y_val, classes)


def assert_trains(cfg, run_dir, data=None, factor=0.5):
    result = train(cfg, run_dir, data=data, plot=False)
    rows = result.rows
    assert [r["epoch"] for r in rows] == list(range(1, cfg.trainer.epochs + 1))
    losses = [r["train/loss"] for r in rows]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < factor * losses[0], f"{cfg.optimizer} / {cfg.loss.name}: the training loss did not fall: {losses}"
    assert np.isfinite(rows[-1]["val/loss"])
    assert (run_dir / "summary.json").is_file() and (run_dir / "metrics.csv").is_file()
    return rows


# learning rates that train the linear regression of BASE_YAML in 4 epochs of 10 steps
OPTIMIZER_RUNS = {
    "sgd": ["optimizer.name=sgd", "optimizer.lr=0.03"],
    "sgd_momentum": ["optimizer.name=sgd", "optimizer.lr=0.03", "optimizer.momentum=0.9"],
    "sgd_nesterov": ["optimizer.name=sgd", "optimizer.lr=0.03", "optimizer.momentum=0.9", "optimizer.nesterov=true"],
    "adam": ["optimizer.name=adam", "optimizer.lr=0.1"],
    "adagrad": ["optimizer.name=adagrad", "optimizer.lr=0.5"],
    "rmsprop": ["optimizer.name=rmsprop", "optimizer.lr=0.1"],
    "adadelta": ["optimizer.name=adadelta", "optimizer.lr=1.0", "optimizer.eps=0.01"],
    "yogi": ["optimizer.name=yogi", "optimizer.lr=0.1"],
    "yogi_scratch": ["optimizer.name=yogi", "optimizer.lr=0.1", "optimizer.impl=scratch"],
}


def test_every_optimizer_has_a_training_run():
    assert {overrides[0].removeprefix("optimizer.name=") for overrides in OPTIMIZER_RUNS.values()} == set(OPTIMIZERS)


@pytest.mark.parametrize("run", sorted(OPTIMIZER_RUNS))
def test_every_optimizer_lowers_the_training_loss(run, tmp_path):
    cfg = config(tmp_path, OPTIMIZER_RUNS[run])
    assert cfg.optimizer.name in OPTIMIZERS
    assert_trains(cfg, tmp_path / "run")


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_every_schedule_lowers_the_training_loss(schedule, tmp_path):
    cfg = config(tmp_path, [f"optimizer.schedule.name={schedule}", "optimizer.schedule.step_epochs=2",
                            "optimizer.schedule.gamma=0.5", "optimizer.momentum=0.9",
                            "optimizer.schedule.milestones=[2]", "optimizer.schedule.warmup=1"])
    assert_trains(cfg, tmp_path / "run")


# a model and data for each loss
LOSS_RUNS = {
    "squared_error": ["loss.name=squared_error"],
    "mse": ["loss.name=mse"],
    "cross_entropy": ["loss.name=cross_entropy", "model={name: softmax_regression}", "optimizer.lr=0.5"],
    "cross_entropy_mlp": ["loss.name=cross_entropy", "model={name: mlp, hidden: [16], dropout: 0.1}", "optimizer.lr=0.3"],
}


# losses whose targets need their own data, trained in another test file
LOSSES_TRAINED_ELSEWHERE = {"masked_cross_entropy": "tests/test_seq2seq.py", "binary_cross_entropy": "tests/test_recsys.py",
                            "masked_squared_error": "tests/test_recsys.py", "bpr": "tests/test_recsys.py",
                            "hinge": "tests/test_recsys.py", "ssd": "tests/test_ssd.py",
                            "pixel_cross_entropy": "tests/test_fcn.py", "masked_sigmoid_bce": "tests/test_word2vec.py",
                            "bert_pretraining": "tests/test_bert_pretrain.py"}


def test_every_loss_has_a_training_run():
    runs = {overrides[0].removeprefix("loss.name=") for overrides in LOSS_RUNS.values()}
    assert runs | set(LOSSES_TRAINED_ELSEWHERE) == set(LOSSES)


@pytest.mark.parametrize("run", sorted(LOSS_RUNS))
def test_every_loss_lowers_the_training_loss(run, tmp_path):
    cfg = config(tmp_path, LOSS_RUNS[run])
    classify = LOSSES[cfg.loss.name].classify
    rows = assert_trains(cfg, tmp_path / "run", data=classification_data() if classify else None)
    if classify:  # accuracy is reported beside the loss, and the blobs are learnt
        assert rows[-1]["train/acc"] > rows[0]["train/acc"] - 0.05 and rows[-1]["val/acc"] > 0.8
    else:
        assert "train/acc" not in rows[-1]


# ------------------------------------------------------------------ unknown names


def assert_lists(message, registry):
    for name in registry:
        assert re.search(rf"\b{re.escape(name)}\b", message), f"{name!r} is not listed in: {message}"


@pytest.mark.parametrize(
    "override, registry",
    [
        ("optimizer.name=lion", OPTIMIZERS),
        ("optimizer.schedule.name=exponential", SCHEDULES),
        ("loss.name=focal", LOSSES),
        ("model.name=mamba", MODELS),
        ("model={name: mamba}", MODELS),
        ("data.name=cifar", DATASETS),
        ("model.activation=gelu", ACTIVATIONS),
        ("model.init=orthogonal", WEIGHT_INITS),
    ],
)
def test_an_unknown_name_lists_the_valid_ones(override, registry, tmp_path):
    with pytest.raises(ConfigError) as err:
        config(tmp_path, ["model={name: mlp}", override])
    message = str(err.value)
    bad = override.partition("=")[2].removeprefix("{name: ").removesuffix("}")
    assert bad in message and f"--set {override}" in message, message
    assert_lists(message, registry)


@pytest.mark.parametrize(
    "text, registry",
    [
        ("optimizer: {name: lion}\n", OPTIMIZERS),
        ("loss: {name: focal}\n", LOSSES),
        ("model: {name: mamba}\n", MODELS),
    ],
)
def test_an_unknown_name_in_a_file_lists_the_valid_ones(text, registry, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert_lists(message, registry)
