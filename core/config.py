"""Experiment configuration: YAML files parsed into frozen, validated pydantic models.

A config file holds only what differs from the defaults below. It may extend another file
(`base: mlp.yaml`, resolved relative to the file) and be overridden from the command line
(`--set optimizer.lr=0.05`, the value parsed as YAML). Every mistake becomes a `ConfigError`
that names the file (or the `--set` option), the dotted key, what was expected and what was
found. This module imports neither JAX nor the registries, so `dlrun --help` stays fast; a test
checks that the names accepted here match the registries in `core`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(Exception):
    """A config that cannot be used; the message is meant for the user, as is."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------- data


class SyntheticRegressionData(Section):
    """y = X w + b + noise, X ~ N(0, 1) (D2L 3.3). `true_w` is a list, or one number repeated
    `num_inputs` times (D2L 4.5: d = 200 inputs of weight 0.01)."""

    name: Literal["synthetic_regression"] = "synthetic_regression"
    true_w: float | tuple[float, ...] = (2.0, -3.4)
    num_inputs: int | None = Field(None, gt=0, description="with a scalar true_w: how many inputs")
    true_b: float = 4.2
    noise: float = Field(0.01, ge=0)
    num_train: int = Field(1000, gt=0)
    num_val: int = Field(1000, gt=0)
    batch_size: int = Field(32, gt=0)

    @model_validator(mode="after")
    def _weights(self) -> SyntheticRegressionData:
        if isinstance(self.true_w, tuple):
            if not self.true_w:
                raise ValueError("true_w must hold at least one weight")
            if self.num_inputs is not None and self.num_inputs != len(self.true_w):
                raise ValueError(f"num_inputs ({self.num_inputs}) disagrees with len(true_w) ({len(self.true_w)})")
        elif self.num_inputs is None:
            raise ValueError("a single number for true_w needs num_inputs (how many inputs share it)")
        return self

    def weights(self) -> tuple[float, ...]:
        return self.true_w if isinstance(self.true_w, tuple) else (self.true_w,) * self.num_inputs


class PolynomialData(Section):
    """x ~ N(0, 1); features x^i / i! for i < num_features; y = features @ true_w + noise (D2L 4.4).
    The model sees the first `num_features` features (4: a cubic, 2: linear, 20: all)."""

    name: Literal["polynomial"] = "polynomial"
    num_features: int = Field(4, gt=0, le=20)
    max_degree: int = Field(20, gt=0, description="features of the generating polynomial")
    true_w: tuple[float, ...] = (5.0, 1.2, -3.4, 5.6)
    noise: float = Field(0.1, ge=0)
    num_train: int = Field(100, gt=0)
    num_val: int = Field(100, gt=0)
    batch_size: int = Field(10, gt=0)


class FashionMNISTData(Section):
    """Fashion-MNIST from the four original IDX files (D2L 3.5)."""

    name: Literal["fashion_mnist"] = "fashion_mnist"
    dir: str | None = None
    resize: int | None = Field(None, gt=0)
    num_train: int | None = Field(None, gt=0, description="use the first N training images")
    num_val: int | None = Field(None, gt=0, description="use the first N test images")
    batch_size: int = Field(256, gt=0)


class CSVData(Section):
    """A table read with pandas: numeric columns standardised (missing -> 0, the mean), categorical
    columns one-hot encoded with a missing-value category; statistics fitted on the training rows
    only (D2L 2.2, 4.10). Without `val_file`, the last `val_fraction` of the (shuffled) rows
    validate."""

    name: Literal["csv"] = "csv"
    file: str = Field(description="CSV path, or a file name looked up in the data directories")
    val_file: str | None = None
    target: str = "SalePrice"
    drop: tuple[str, ...] = ("Id",)
    log_target: bool = False
    val_fraction: float = Field(0.2, ge=0, lt=1)
    dir: str | None = None
    batch_size: int = Field(64, gt=0)


DataConfig = Annotated[
    Union[SyntheticRegressionData, PolynomialData, FashionMNISTData, CSVData], Field(discriminator="name")
]

# --------------------------------------------------------------------------- models

Init = Literal["normal", "xavier", "he", "zeros"]


class LinearRegressionModel(Section):
    """One dense layer with a single output (D2L 3.1)."""

    name: Literal["linear_regression"] = "linear_regression"
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0, description="stddev of the 'normal' initialisation")
    bias: bool = True


class SoftmaxRegressionModel(Section):
    """Flatten, then one dense layer with one output per class (D2L 3.4)."""

    name: Literal["softmax_regression"] = "softmax_regression"
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)


class MLPModel(Section):
    """Flatten, then dense + activation (+ dropout) per hidden layer, then a dense output (D2L 4.1)."""

    name: Literal["mlp"] = "mlp"
    hidden: tuple[Annotated[int, Field(gt=0)], ...] = (256,)
    activation: Literal["relu", "sigmoid", "tanh"] = "relu"
    dropout: Annotated[float, Field(ge=0, lt=1)] | tuple[Annotated[float, Field(ge=0, lt=1)], ...] = 0.0
    init: Init = "normal"
    init_scale: float = Field(0.01, ge=0)

    @model_validator(mode="after")
    def _dropout_per_layer(self) -> MLPModel:
        if isinstance(self.dropout, tuple) and len(self.dropout) != len(self.hidden):
            raise ValueError(
                f"dropout lists {len(self.dropout)} rates for {len(self.hidden)} hidden layers; "
                "give one rate per hidden layer or a single number"
            )
        return self

    def drop_rates(self) -> tuple[float, ...]:
        if isinstance(self.dropout, tuple):
            return self.dropout
        return (self.dropout,) * len(self.hidden)


class LeNetModel(Section):
    """LeNet-5 as D2L 6.6 builds it: conv 5x5 (6, padding 2), pool 2, conv 5x5 (16), pool 2,
    dense 120, 84, then one output per class; the activation after every hidden layer."""

    name: Literal["lenet"] = "lenet"
    activation: Literal["relu", "sigmoid", "tanh"] = "sigmoid"
    pool: Literal["avg", "max"] = "avg"
    init: Init = "xavier"
    init_scale: float = Field(0.01, ge=0, description="stddev of the 'normal' initialisation")
    conv_impl: Literal["auto", "xla", "cpu"] = Field(
        "auto", description="convolution formulation (core/conv.py); auto: the fastest measured for the backend"
    )


ModelConfig = Annotated[
    Union[LinearRegressionModel, SoftmaxRegressionModel, MLPModel, LeNetModel], Field(discriminator="name")
]

# ------------------------------------------------------------------ loss, optimizer


class LossConfig(Section):
    """squared_error is the book's 1/2 (y_hat - y)^2; mse is nn.MSELoss; cross_entropy takes logits."""

    name: Literal["squared_error", "mse", "cross_entropy"] = "cross_entropy"
    l2_penalty: float = Field(0.0, ge=0, description="lambda: adds lambda/2 ||w||^2 of the weights (D2L 4.5)")


class ScheduleConfig(Section):
    """Learning-rate schedule, stepped per optimizer update; lengths are given in epochs."""

    name: Literal["constant", "step", "cosine"] = "constant"
    step_epochs: int = Field(1, gt=0, description="step: multiply by gamma every step_epochs")
    gamma: float = Field(0.1, gt=0)
    final_fraction: float = Field(0.0, ge=0, le=1, description="cosine: final lr / initial lr")


class OptimizerConfig(Section):
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, description="L2 on weights (not biases), as SGD's weight_decay")
    clip_norm: float | None = Field(None, gt=0, description="clip gradients by global norm")
    schedule: ScheduleConfig = ScheduleConfig()


class TrainerConfig(Section):
    epochs: int = Field(10, gt=0)
    loop: Literal["auto", "step", "scan"] = "auto"
    progress: Literal["auto", "bar", "plain", "none"] = "auto"
    checkpoint_every: int = Field(1, ge=0, description="epochs between checkpoints; 0: only at the end")
    keep_checkpoints: int = Field(2, gt=0, description="how many of the newest checkpoints to keep")


class ExperimentConfig(Section):
    """Which procedure runs the config: `train` (the generic loop) or an experiment module,
    whose own options sit beside `name` and are validated by that module."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "train"

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Config(Section):
    experiment: ExperimentConfig = ExperimentConfig()
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    data: DataConfig = FashionMNISTData()
    model: ModelConfig = MLPModel()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    trainer: TrainerConfig = TrainerConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, raw: Any) -> Any:
        """Let `data:` and `model:` sections omit `name` (the default kind is meant)."""
        if isinstance(raw, dict):
            raw = dict(raw)
            for section, default in (("data", "fashion_mnist"), ("model", "mlp")):
                if isinstance(raw.get(section), dict) and "name" not in raw[section]:
                    raw[section] = {"name": default, **raw[section]}
        return raw

    @model_validator(mode="after")
    def _batch_fits_data(self) -> Config:
        n = getattr(self.data, "num_train", None)
        if n is not None and self.data.batch_size > n:
            raise ValueError(f"data.batch_size ({self.data.batch_size}) is larger than data.num_train ({n})")
        return self


# ------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, resolve `base:` files, apply `--set` overrides and validate.

    Raises:
        ConfigError: with a message that names the file or option, the key, the expected and
            the found value.
    """
    path = Path(path)
    raw = _read_with_bases(path, chain=())
    set_keys = {}
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(raw, key, value, item)
        set_keys[key] = item
    return validate(raw, source=str(path), set_keys=set_keys)


def parse_override(item: str) -> tuple[str, Any]:
    """`optimizer.lr=0.05` -> ("optimizer.lr", 0.05); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.05")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item}: the value is not valid YAML ({_one_line(err)})") from None
    return key, value


def validate(raw: dict, source: str, set_keys: dict[str, str] | None = None) -> Config:
    """Validate a raw mapping into a Config, turning pydantic's errors into ConfigError."""
    set_keys = set_keys or {}
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        lines = [_describe(e, Config, source, set_keys) for e in err.errors()]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def validate_options(cls: type[BaseModel], cfg: Config, source: str = "config") -> BaseModel:
    """Validate an experiment's options (the keys beside `experiment.name`) with its own model.

    Errors read like every other config error: `<source>: experiment.<key>: ...`.
    """
    try:
        return cls.model_validate(cfg.experiment.options())
    except ValidationError as err:
        lines = [_describe(e, cls, source, {}, prefix=("experiment",)) for e in err.errors()]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML, loadable again by `load_config`."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}: config keys as the CLI writes them."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def header_comment(path: str | Path) -> list[str]:
    """The leading comment lines of a config file, without the '#'."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict:
    raw = _read_yaml_mapping(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected the path of another config file, found {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(f"{path}: base: {base} extends itself (cycle: {' -> '.join(map(str, chain))})")
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: no such file {base_path}")
    return _deep_merge(_read_with_bases(base_path, chain + (path.resolve(),)), raw)


def _read_yaml_mapping(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not a UTF-8 text file, expected a YAML config file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: is not valid YAML: {_one_line(err)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: is nested too deeply to be a config") from None
    if raw is None:
        raise ConfigError(f"{path}: is empty; expected a YAML mapping with sections such as model and optimizer")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, found {type(raw).__name__}")
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: keys must be strings, found {bad[0]!r}")
    return raw


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(raw: dict, key: str, value: Any, item: str) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"--set {item}: {where} is a value, not a section, so it has no key {key}")
        node = child
    node[leaf] = value


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


# ---------------------------------------------------------------- error messages

_TAGGED = {"data": DataConfig, "model": ModelConfig}
_UNION_PART = re.compile(r"^(float|int|str|bool|none|tuple\[.*\]|list\[.*\]|function-\w+\[.*\]|constrained-.*)$")


def _describe(error: dict, root: type, source: str, set_keys: dict[str, str], prefix: tuple = ()) -> str:
    """One line for one pydantic error: `<where>: <dotted key>: <what is wrong>`."""
    loc, model_path = _user_loc(error["loc"]) if root is Config else (tuple(error["loc"]), tuple(error["loc"]))
    valid = _valid_keys(model_path, root)
    loc = prefix + loc
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    where = source
    for key, item in set_keys.items():
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            where = f"--set {item}"
    kind = error["type"]
    found = error.get("input")
    if kind == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6) if loc else []
        suggestion = f"; did you mean '{'.'.join(map(str, loc[:-1] + (hint[0],)))}'?" if hint else ""
        return f"{where}: {dotted}: unknown key{suggestion} (valid keys here: {', '.join(valid)})"
    if kind == "union_tag_invalid":
        tags = error["ctx"]["expected_tags"].replace("'", "")
        return f"{where}: {dotted}.name: unknown {dotted} '{error['ctx']['tag']}'; expected one of: {tags}"
    if kind == "model_attributes_type" or kind == "model_type":
        return f"{where}: {dotted}: expected a mapping (a section of keys), found {_show(found)}"
    if kind == "value_error":
        return f"{where}: {dotted}: {error['msg'].removeprefix('Value error, ')}"
    if kind == "literal_error":
        return f"{where}: {dotted}: expected one of {error['ctx']['expected']}, found {_show(found)}"
    expected = error["msg"].removeprefix("Input should be ").removeprefix("Value should be ")
    if expected.startswith(("greater", "less")):
        expected = "a value " + expected
    return f"{where}: {dotted}: expected {expected}, found {_show(found)}"


def _user_loc(loc: tuple) -> tuple[tuple, tuple]:
    """Drop the discriminator tags pydantic inserts (`model.mlp.hidden` -> `model.hidden`).

    Returns the user's dotted location and the location with tags kept (for key look-ups).
    """
    out = []
    i = 0
    while i < len(loc):
        out.append(loc[i])
        if i == 0 and loc[i] in _TAGGED and i + 1 < len(loc):
            i += 1  # skip the tag
        i += 1
    # pydantic names the alternatives of an `a | b` field as extra path parts ("float",
    # "tuple[float, ...]"); they are never the user's keys, which come first
    out = out[:1] + [p for p in out[1:] if not (isinstance(p, str) and _UNION_PART.match(p))]
    return tuple(out), tuple(loc)


def _valid_keys(model_path: tuple, root: type) -> list[str]:
    """The field names of the section that holds the last key of `model_path`."""
    cls: Any = root
    parts = list(model_path[:-1])
    while parts:
        part = parts.pop(0)
        if part in _TAGGED and cls is Config:
            tag = parts.pop(0) if parts else None
            members = _TAGGED[part].__origin__.__args__
            cls = next((m for m in members if m.model_fields["name"].default == tag), members[0])
            continue
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        cls = annotation
    return sorted(cls.model_fields)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
