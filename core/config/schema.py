"""The config schema: one frozen pydantic model per section, with the defaults a file omits.

A config file holds only what differs from these defaults. The names a section accepts (model,
data, loss, optimizer, schedule) are the keys of the registries in `core.nn`, `core.data` and
`core.training`; this module imports none of them (nor JAX), so that `dlrun --help` stays fast,
and `tests/test_registries.py` proves that the two agree both ways.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from . import metrics
from .data import *  # noqa: F403 - the data sections belong to the schema's vocabulary
from .data import DataConfig, FashionMNISTData, batch_too_large
from .models import MLPModel, ModelConfig, Section

# ------------------------------------------------------------------ loss, optimizer


class LossConfig(Section):
    """squared_error is the book's 1/2 (y_hat - y)^2; mse is nn.MSELoss; cross_entropy takes logits
    (of sequences too: the mean over steps); masked_cross_entropy sums over each target's valid
    tokens and averages over tokens (D2L 10.7.3); binary_cross_entropy takes one logit per
    example (a click, D2L 16.9); masked_squared_error is 1/2 (y_hat - y)^2 over the targets that
    are not 0 (the observed ratings of an AutoRec row, D2L 16.4), averaged over them; bpr and
    hinge rank a positive item above a sampled negative one (D2L 16.5); pixel_cross_entropy is the
    mean over an image's pixels of their cross-entropy (a segmentation's mask, D2L 13.11); ssd is
    the detector's anchor-class cross-entropy plus the masked L1 of its box offsets (D2L 13.7);
    masked_sigmoid_bce is skip-gram's sigmoid cross-entropy over each centre word's context and
    noise words, padding masked out (D2L 14.4.2); bert_pretraining is BERT's masked-token
    cross-entropy (over each example's predicted positions) plus its next-sentence cross-entropy,
    each reported beside the sum (D2L 14.10)."""

    name: Literal["squared_error", "mse", "cross_entropy", "masked_cross_entropy", "binary_cross_entropy",
                  "masked_squared_error", "bpr", "hinge", "pixel_cross_entropy", "ssd",
                  "masked_sigmoid_bce", "bert_pretraining"] = "cross_entropy"  # classifying: `metrics`
    l2_penalty: float = Field(0.0, ge=0, description="lambda: adds lambda/2 ||w||^2 of the weights (D2L 4.5)")


class ScheduleConfig(Section):
    """The learning rate over training, lr x factor(t) (D2L 11.11); every length is in epochs.

    t advances with every optimizer update (`per: step`, as the book's MXNet schedulers), or only
    with each finished epoch (`per: epoch`, as the PyTorch schedulers of the book's runs).
    - step: gamma^floor(t / step_epochs)
    - factor: max(min_fraction, gamma^t)
    - multi_factor: gamma to the number of milestones reached
    - sqrt: (t + 1)^(-1/2)
    - cosine: a linear warm-up from 0 over `warmup` epochs, then from 1 down to final_fraction
      at `length` (default: the whole run), final_fraction afterwards
    """

    name: Literal["constant", "step", "factor", "multi_factor", "sqrt", "cosine"] = "constant"
    per: Literal["step", "epoch"] = "step"
    step_epochs: int = Field(1, gt=0, description="step: multiply by gamma every step_epochs")
    gamma: float = Field(0.1, gt=0, description="step, factor, multi_factor: the multiplier")
    min_fraction: float = Field(0.0, ge=0, le=1, description="factor: the lowest lr / initial lr")
    milestones: tuple[float, ...] = Field((), description="multi_factor: epochs where lr is multiplied by gamma")
    final_fraction: float = Field(0.0, ge=0, le=1, description="cosine: final lr / initial lr")
    warmup: float = Field(0.0, ge=0, description="cosine: epochs of linear warm-up from 0")
    length: float | None = Field(None, gt=0, description="cosine: epochs until final_fraction (default: all)")

    @model_validator(mode="after")
    def _lengths(self) -> ScheduleConfig:
        if self.length is not None and self.warmup >= self.length:
            raise ValueError(f"warmup ({self.warmup}) must be shorter than length ({self.length})")
        if list(self.milestones) != sorted(self.milestones) or any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be positive and increasing, got {list(self.milestones)}")
        return self


class ParamGroup(Section):
    """Parameters picked by path (`dense2/*`, `residual*/conv1/w`: shell-style patterns over
    the parameter paths `dlrun summary` shows) that train at their own learning rate, or not at
    all (D2L 13.2: the pretrained body at lr, the new head at 10 lr). A parameter takes the
    first group whose pattern matches it; the others train as the optimizer says."""

    params: str = Field(min_length=1, description="a shell-style pattern over parameter paths, e.g. output/*")
    lr_scale: float = Field(1.0, gt=0, description="this group's learning rate is optimizer.lr times this")
    freeze: bool = Field(False, description="leave these parameters as they are (no optimizer state is kept for them)")


class OptimizerConfig(Section):
    """The optimizer (D2L 11.5-11.10). `impl: scratch` uses the book's equations written out
    (`core.training.from_scratch`) instead of Optax's transforms; the two agree (tested)."""

    # The hyperparameters kept in the optimizer state (`core.training.optimizers` injects exactly
    # these): their values are arrays, so trials differing only in them share one compiled program
    # (`core.sweep.groups`); each maps a value to what of it is structure (momentum on or off).
    IN_STATE: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "lr": lambda v: None, "momentum": lambda v: v > 0, "weight_decay": lambda v: v > 0,
        "clip_norm": lambda v: v is None,
    }

    name: Literal["sgd", "adam", "adagrad", "rmsprop", "adadelta", "yogi"] = "sgd"
    impl: Literal["optax", "scratch"] = "optax"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    b1: float = Field(0.9, ge=0, lt=1, description="adam, yogi: decay of the first moment")
    b2: float = Field(0.999, ge=0, lt=1, description="adam, yogi: decay of the second moment")
    decay: float = Field(0.9, gt=0, lt=1, description="rmsprop: gamma; adadelta: rho")
    eps: float | None = Field(None, gt=0, description="default: adagrad, rmsprop 1e-6; adadelta 1e-5; adam 1e-8; yogi 1e-3")

    @model_validator(mode="after")
    def _scratch_momentum(self) -> OptimizerConfig:
        if self.impl == "scratch" and self.nesterov:
            raise ValueError("nesterov momentum has no from-scratch form; use impl: optax")
        return self
    weight_decay: float = Field(0.0, ge=0, description="L2 on weights (not biases), as SGD's weight_decay")
    clip_norm: float | None = Field(None, gt=0, description="clip gradients by global norm")
    groups: tuple[ParamGroup, ...] = Field((), description="parameters with their own learning rate, or frozen (fine-tuning)")
    schedule: ScheduleConfig = ScheduleConfig()


class TrainerConfig(Section):
    epochs: int = Field(10, gt=0, le=10_000_000)
    loop: Literal["auto", "step", "scan"] = "auto"
    progress: Literal["auto", "bar", "plain", "none"] = "auto"
    checkpoint_every: int = Field(1, ge=0, description="epochs between checkpoints; 0: only at the end")
    keep_checkpoints: int = Field(2, gt=0, description="how many of the newest checkpoints to keep")
    devices: int | Literal["all"] = Field(1, description="data parallel: shard every batch over this many devices")
    log_to: tuple[Literal["tensorboard", "mlflow"], ...] = Field(
        (), description="tracking: tensorboard (event files in <run>/tb), mlflow (a run in mlflow_uri's store)")
    mlflow_uri: str | None = Field(None, min_length=1,
                                   description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in ./mlruns)")

    @model_validator(mode="after")
    def _devices(self) -> TrainerConfig:
        if isinstance(self.devices, int) and self.devices < 1:
            raise ValueError(f"devices must be at least 1 or 'all', got {self.devices}")
        if len(set(self.log_to)) != len(self.log_to):
            raise ValueError(f"log_to names a tracker twice: {list(self.log_to)}")
        return self


class InitFrom(Section):
    """Start from another run's trained parameters (D2L 13.2, fine-tuning): every parameter and
    model-state array (batch-norm statistics) whose path matches `include` and not `exclude` is
    copied from the run's params.npz; the rest (a new output layer) is initialised as usual. A
    copied array must have the same shape in both models."""

    run: str = Field(min_length=1, description="a run directory holding params.npz (any finished run)")
    include: tuple[str, ...] = Field(("*",), description="shell-style patterns of the paths to copy")
    exclude: tuple[str, ...] = Field((), description="patterns of paths initialised afresh (the head)")


class ExperimentConfig(Section):
    """Which procedure runs the config: `train` (the generic loop) or an experiment module,
    whose own options sit beside `name` and are validated by that module."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "train"

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BookResult(Section):
    """What the book reports for this config; `dlrun reproduce` puts ours next to it."""

    section: str = Field(pattern=r"^\d+(\.\d+)*$", description="in the 0.16 edition's numbering (its table of contents), e.g. 4.6")
    metric: str = Field(pattern=r"^[A-Za-z0-9_./-]+$", description="a key of the run's summary.json, e.g. val/acc")
    reported: tuple[float, float] = Field(description="[low, high]: the range over the book's editions")
    better: Literal["higher", "lower"] = "higher"

    @model_validator(mode="after")
    def _range(self) -> BookResult:
        low, high = self.reported
        if not low <= high:
            raise ValueError(f"reported: low ({low}) must not exceed high ({high})")
        return self


class Config(Section):
    experiment: ExperimentConfig = ExperimentConfig()
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="the root of every random draw (a 32-bit number)")
    data: DataConfig = FashionMNISTData()
    model: ModelConfig = MLPModel()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    optimizers: dict[str, OptimizerConfig] = Field(
        default_factory=dict, description="a model of several parts (a GAN): each part's optimizer by its name; "
        "a part not named here takes `optimizer`")
    trainer: TrainerConfig = TrainerConfig()
    init_from: InitFrom | None = None
    book: BookResult | None = None

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
        problem = None if n is None else batch_too_large(self.data.batch_size, n, "data.num_train")
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _book_metric(self) -> Config:
        if self.book is not None and self.experiment.name == "train":
            reported = metrics.reported(self)
            if self.book.metric not in reported:
                raise ValueError(f"book.metric: the run never reports {self.book.metric!r}; it reports "
                                 f"{', '.join(sorted(reported))}")
        return self
