"""The `data:` sections of a config, one per data set; `DataConfig` is their union by `name`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from .augment import AugmentConfig
from .families import FAMILY_DATA
from .models import Section

# ---------------------------------------------------------------------------- data


def batch_too_large(batch_size: int, num_train: int, what: str = "the training set") -> str | None:
    """The one rule for a batch and the examples it is drawn from: a batch holds at most all of
    them (an epoch drops its last partial batch, so a larger one would train on nothing). The
    message naming data.batch_size when the rule is broken, else None."""
    if batch_size > num_train:
        return f"data.batch_size ({batch_size}) is larger than {what} ({num_train} examples)"
    return None



class SyntheticRegressionData(Section):
    """y = X w + b + noise, X ~ N(0, 1) (D2L 3.3). `true_w` is a list, or one number repeated
    `num_inputs` times (D2L 4.5: d = 200 inputs of weight 0.01)."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ("w_error", "b_error")  # summary keys its runs add
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

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["polynomial"] = "polynomial"
    num_features: int = Field(4, gt=0, le=20)
    max_degree: int = Field(20, gt=0, description="features of the generating polynomial")
    true_w: tuple[float, ...] = (5.0, 1.2, -3.4, 5.6)
    noise: float = Field(0.1, ge=0)
    num_train: int = Field(100, gt=0)
    num_val: int = Field(100, gt=0)
    batch_size: int = Field(10, gt=0)


class SineData(Section):
    """The noisy sine series of D2L 9.1: x_t = sin(0.01 t) + N(0, noise^2), t = 1..T; each
    example is the previous `tau` values, its label x_t. The first `num_train` examples train,
    the rest validate (1.0; the 0.16 edition trains on the same 600)."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["sine"] = "sine"
    T: int = Field(1000, gt=1)
    tau: int = Field(4, gt=0)
    noise: float = Field(0.2, ge=0)
    num_train: int = Field(600, gt=0)
    batch_size: int = Field(16, gt=0)

    @model_validator(mode="after")
    def _fits(self) -> SineData:
        if self.num_train >= self.T - self.tau:
            raise ValueError(f"num_train ({self.num_train}) must be below T - tau ({self.T - self.tau} examples)")
        return self


class FashionMNISTData(Section):
    """Fashion-MNIST from the four original IDX files (D2L 3.5). Images stay 28x28 in memory;
    `resize` (bilinear) and `augment` run on the device per batch."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["fashion_mnist"] = "fashion_mnist"
    dir: str | None = None
    resize: int | None = Field(None, gt=0, description="side of the square images the model sees (D2L 8.1: 224)")
    augment: AugmentConfig = AugmentConfig()
    num_train: int | None = Field(None, gt=0, description="use the first N training images")
    num_val: int | None = Field(None, gt=0, description="use the first N test images")
    batch_size: int = Field(256, gt=0)


class CIFAR10Data(Section):
    """CIFAR-10 from the python batches of `cifar-10-python.tar.gz` (D2L 13.1.2): 50,000
    training and 10,000 test 32x32 RGB images in [0, 1], ten classes. `resize` (bilinear) and
    `augment` run on the device per batch."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["cifar10"] = "cifar10"
    dir: str | None = Field(None, description="the folder holding cifar-10-python.tar.gz")
    resize: int | None = Field(None, gt=0, description="side of the square images the model sees")
    augment: AugmentConfig = AugmentConfig()
    num_train: int | None = Field(None, gt=0, description="use the first N training images")
    num_val: int | None = Field(None, gt=0, description="use the first N test images")
    batch_size: int = Field(256, gt=0)


class CSVData(Section):
    """A table read with pandas: numeric columns standardised (missing -> 0, the mean), categorical
    columns one-hot encoded with a missing-value category; statistics fitted on the training rows
    only (D2L 2.2, 4.10). Without `val_file`, the last `val_fraction` of the (shuffled) rows
    validate."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["csv"] = "csv"
    file: str = Field(description="CSV path, or a file name looked up in the data directories")
    val_file: str | None = None
    target: str = "SalePrice"
    drop: tuple[str, ...] = ("Id",)
    log_target: bool = False
    val_fraction: float = Field(0.2, ge=0, lt=1)
    dir: str | None = None
    batch_size: int = Field(64, gt=0)


class AirfoilData(Section):
    """NASA airfoil self-noise (D2L 11.5): every column, the target included, standardised over
    all 1,503 rows; the first `num_rows` rows; the first five columns are the features, the last
    the target. The book records the loss on all those rows as it trains, so they are the
    validation split too. `examples_per_epoch` makes each epoch of the loop that many examples
    of an endless shuffled stream (the book records every 200 examples); by default an epoch is
    one pass."""

    task: ClassVar[str] = "supervised"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["airfoil"] = "airfoil"
    num_rows: int = Field(1500, gt=0, le=1503)
    batch_size: int = Field(10, gt=0)
    examples_per_epoch: int | None = Field(None, gt=0, description="a multiple of batch_size")
    dir: str | None = None

    @model_validator(mode="after")
    def _whole_batches(self) -> AirfoilData:
        if self.examples_per_epoch is not None and self.examples_per_epoch % self.batch_size:
            raise ValueError(f"examples_per_epoch ({self.examples_per_epoch}) must be a multiple of "
                             f"batch_size ({self.batch_size})")
        return self


class TimeMachineData(Section):
    """The Time Machine (H. G. Wells) as a language-modelling data set (D2L 9.2-9.3): cleaned to
    lower-case letters and spaces, `char` or `word` tokens, or `bpe` subwords (D2L 14.6: `merges`
    merges learned from the text's word frequencies, each word segmented by longest match over
    the learned symbols), windows of `num_steps` tokens whose targets are the next tokens.

    `sampling: windows` (the 1.0 edition): the first `num_train` windows (stride 1) train, the
    `num_val` after them validate, shuffled each epoch. `random` and `sequential` (the 0.16
    edition) partition the first `max_tokens` tokens (D2L 9.3.4; sequential carries the hidden
    state from batch to batch); the next `num_val` non-overlapping windows validate."""

    task: ClassVar[str] = "language_model"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["time_machine"] = "time_machine"
    token: Literal["char", "word", "bpe"] = "char"
    merges: int = Field(200, ge=0, description="bpe: byte-pair merges to learn from the text's words (each adds a subword)")
    num_steps: int = Field(32, gt=0)
    sampling: Literal["windows", "random", "sequential"] = "windows"
    num_train: int = Field(10000, gt=0, description="windows: training windows")
    num_val: int = Field(5000, ge=0, description="validation windows")
    max_tokens: int | None = Field(10000, gt=0, description="random, sequential: tokens of the corpus to train on")
    drop_last: bool = Field(False, description="windows: leave out the last partial batch (the book's loader keeps it)")
    prefix: str = Field("time traveller", min_length=1, description="after training, summary.json holds this text's continuation")
    predict_tokens: int = Field(50, ge=0, description="how many tokens that continuation predicts")
    file: str | None = Field(None, description="read this text file instead of timemachine.txt")
    dir: str | None = None
    batch_size: int = Field(1024, gt=0)


BOOK_SENTENCES = {"go .": "va !", "i lost .": "j'ai perdu .", "he's calm .": "il est calme .",
                  "i'm home .": "je suis chez moi ."}


class FraEngData(Section):
    """English-French sentence pairs (D2L 10.5): the book's preprocessing, word tokens, each
    sentence given `<eos>` and cut or padded to `num_steps`. The first `num_train` pairs of the
    file train and the `num_val` after them are held out (1.0: 512 and 129; 0.16 trains on the
    first 601 and holds out none). After training, summary.json holds the translations of
    `sentences` (source: reference) with their BLEU, and the corpus BLEU of the held-out pairs
    decoded greedily and with a beam of `beam_size`."""

    task: ClassVar[str] = "translation"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ()  # summary keys its runs add
    name: Literal["fra_eng"] = "fra_eng"
    num_steps: int = Field(9, gt=1)
    num_train: int = Field(512, gt=0)
    num_val: int = Field(129, ge=0)
    min_freq: int = Field(2, ge=0, description="rarer tokens become <unk>")
    sentences: dict[str, str] = Field(default_factory=lambda: dict(BOOK_SENTENCES),
                                      description="source sentence: reference translation")
    beam_size: int = Field(3, gt=0)
    drop_last: bool = Field(False, description="leave out the last partial batch (the book's loaders keep it)")
    file: str | None = Field(None, description="read this file of english<TAB>french lines instead of fra-eng/fra.txt")
    dir: str | None = None
    batch_size: int = Field(128, gt=0)


class GaussianGANData(Section):
    """The book's data for its first GAN (D2L 17.1): X ~ N(0, I) (num_train, 2), the examples
    X A + b, a Gaussian with mean b and covariance A^T A. There is no validation split: a GAN
    is judged by what it generates (summary.json: the generated mean and covariance next to the
    data's)."""

    task: ClassVar[str] = "adversarial"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ("ln2_gap",)  # how far the losses end from ln 2 (`core.training.inference`)
    splits: ClassVar[tuple[str, ...]] = ("train",)
    name: Literal["gan_gaussian"] = "gan_gaussian"
    num_train: int = Field(1000, gt=0)
    A: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 2.0), (-0.1, 0.5))
    b: tuple[float, float] = (1.0, 2.0)
    batch_size: int = Field(8, gt=0)


class GANImagesData(Section):
    """Images for a GAN (D2L 17.2), scaled to [-1, 1] as the generator's tanh makes them:
    Fashion-MNIST's training images, or every image under the folder `dir` (the book's Pokemon
    sprites: unzip d2l's pokemon.zip there), resized to `size` x `size` (bilinear) on load. A
    file that is not an image is named and left out. No labels and no validation split."""

    task: ClassVar[str] = "adversarial"  # `core.config.metrics`
    reports: ClassVar[tuple[str, ...]] = ("ln2_gap",)
    splits: ClassVar[tuple[str, ...]] = ("train",)
    name: Literal["gan_images"] = "gan_images"
    source: Literal["fashion_mnist", "folder"] = "fashion_mnist"
    dir: str | None = Field(None, description="folder: the images (any sub-folders); fashion_mnist: its IDX files")
    size: int = Field(32, gt=0, description="side of the square images (the book's 64)")
    channels: Literal[1, 3] = Field(1, description="1: grey, 3: RGB (a folder's images are converted)")
    num_train: int | None = Field(None, gt=0, description="use the first N images")
    batch_size: int = Field(256, gt=0)

    @model_validator(mode="after")
    def _source(self) -> GANImagesData:
        if self.source == "folder" and not self.dir:
            raise ValueError("source: folder needs dir, the folder of images")
        if self.source == "fashion_mnist" and self.channels != 1:
            raise ValueError("channels: Fashion-MNIST's images are grey (1)")
        return self


DataConfig = Annotated[
    Union[SyntheticRegressionData, PolynomialData, SineData, FashionMNISTData, CIFAR10Data, CSVData, AirfoilData, TimeMachineData,
          FraEngData, GaussianGANData, GANImagesData, *FAMILY_DATA],
    Field(discriminator="name"),
]
