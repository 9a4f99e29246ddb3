"""Neural style transfer (D2L 13.12): the synthesised image is what is optimised.

The image starts as the content image and takes Adam steps (the book's lr 0.3, multiplied by
0.8 every 50 epochs, 500 epochs) on the weighted sum of three losses: the content loss (mean
squared error of the features at the content layers), the style loss (mean squared error of
their Gram matrices, normalised by c*h*w, at the style layers) and the total-variation loss.
Features are read at torchvision's module indices (`core.nn.torchvision_vgg`): the book's
VGG-19 from a weights file, or, without one, the conv blocks of a VGG that dlrun trains first
(`experiments.style_features`). Both take ImageNet-normalised input, which is where the image
lives while it is optimised; it is clipped to [0, 1] only to be shown, as in the book.

The epochs are a hand loop, not the training loop (`core.training`), on purpose: there is one
image and no data set, batches, evaluation split or checkpoint; what the run trains as a
network (the feature VGG) goes through the training loop.

Writes metrics.csv (per epoch: the three weighted losses, their total, the lr), losses.png,
images.png (content, style, the image at a few epochs), synthesised.png and summary.json.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, ConfigError, Section, validate_options
from dlrun.core.errors import TrainingDiverged
from dlrun.core.nn import torchvision_vgg as V
from dlrun.core.report import outputs, plots, progress

from . import style_features as F

METRICS = ("loss/total", "loss/content", "loss/style", "loss/tv")


class StyleTransferOptions(Section):
    """The keys beside `experiment.name: style_transfer`; the defaults are the book's."""

    name: str = "style_transfer"
    content: str = Field("matplotlib:grace_hopper.jpg", description="content image: a file, a name in the data dirs, or matplotlib:<file>")
    style: str = Field("matplotlib:Minduka_Present_Blue_Pack.png", description="style image, named as content is")
    height: int = Field(300, gt=0, description="both images are resized to height x width (the book: 300 x 450)")
    width: int = Field(450, gt=0)
    epochs: int = Field(500, gt=0, description="Adam steps on the image")
    lr: float = Field(0.3, gt=0)
    lr_period: int = Field(50, gt=0, description="the lr is multiplied by lr_decay every lr_period epochs")
    lr_decay: float = Field(0.8, gt=0, le=1)
    content_weight: float = Field(1.0, ge=0)
    style_weight: float = Field(1e4, ge=0)
    tv_weight: float = Field(10.0, ge=0)
    content_layers: tuple[int, ...] = Field((25,), min_length=1, description="module indices, torchvision's numbering")
    style_layers: tuple[int, ...] = Field((0, 5, 10, 19, 28), min_length=1)
    weights: str | None = Field(None, description="torchvision VGG-19 weights (.pth or .npz); none: train dlrun's VGG (model)")
    snapshots: int = Field(4, gt=0, description="images shown in images.png, evenly spaced over the epochs")
    log_every: int = Field(50, gt=0, description="print the losses every this many epochs")
    grid: int = Field(4, gt=0, description="feature training: each image cut into grid x grid cells (the classes)")
    patch: int = Field(32, gt=0, description="feature training: side of a patch in pixels")
    patches: int = Field(4096, gt=0, description="feature training: training patches")
    val_patches: int = Field(512, gt=0, description="feature training: validation patches")


class Weights(NamedTuple):
    content: float
    style: float
    tv: float


def content_loss(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error of two feature maps of one shape (D2L 13.12.5.1)."""
    return jnp.mean((y_hat - y) ** 2)


def gram(x: jax.Array) -> jax.Array:
    """(1, h, w, c) -> (c, c): X^T X / (c h w), X the (h w, c) matrix of x (D2L 13.12.5.2)."""
    flat = x.reshape(-1, x.shape[-1])
    return flat.T @ flat / flat.size


def style_loss(y_hat: jax.Array, gram_y: jax.Array) -> jax.Array:
    """Mean squared error of y_hat's Gram matrix and the style's (D2L 13.12.5.2)."""
    return jnp.mean((gram(y_hat) - gram_y) ** 2)


def tv_loss(x: jax.Array) -> jax.Array:
    """Total variation, (batch, H, W, C) -> (): half the mean absolute difference of vertical
    neighbours plus that of horizontal ones (D2L 13.12.5.3). |d| is written d * sign(d): its
    gradient is sign(d), 0 where two neighbours are equal, as PyTorch's `abs` has it in the book
    (`jnp.abs` takes 1 there, and the flat runs of a photo would step apart)."""
    def abs_(d):
        return d * jnp.sign(d)

    return 0.5 * (jnp.mean(abs_(x[:, 1:] - x[:, :-1])) + jnp.mean(abs_(x[:, :, 1:] - x[:, :, :-1])))


def losses(features: V.Features, x: jax.Array, contents: dict, grams: dict, weights: Weights) -> dict[str, jax.Array]:
    """The book's `compute_loss`: each part weighted, and their sum as `total`.

    Args:
        x: the image (1, H, W, 3), normalised as `features` expects.
        contents: content layer -> the content image's features there.
        grams: style layer -> the Gram matrix of the style image's features there.
    """
    found = V.extract(features, x, tuple(sorted({*contents, *grams})))
    parts = {
        "content": weights.content * sum(content_loss(found[i], y) for i, y in contents.items()),
        "style": weights.style * sum(style_loss(found[i], g) for i, g in grams.items()),
        "tv": weights.tv * tv_loss(x),
    }
    return parts | {"total": parts["content"] + parts["style"] + parts["tv"]}


def make_step(features: V.Features, contents: dict, grams: dict, weights: Weights, optimizer: optax.GradientTransformation):
    """`step(x, opt_state) -> (x, opt_state, losses)`: one optimizer update of the image; the
    losses are those before it (the book plots them so). The network's params and the targets
    are arguments of the compiled program, not constants folded into it (VGG-19's are 80 MB)."""

    def total(x, params, contents, grams):
        parts = losses(features._replace(params=params), x, contents, grams, weights)
        return parts["total"], parts

    @jax.jit
    def update(x, opt_state, params, contents, grams):
        (_, parts), g = jax.value_and_grad(total, has_aux=True)(x, params, contents, grams)
        updates, opt_state = optimizer.update(g, opt_state, x)
        return optax.apply_updates(x, updates), opt_state, parts

    return lambda x, opt_state: update(x, opt_state, features.params, contents, grams)


def features_at(features: V.Features, x: jax.Array, taps: tuple[int, ...]) -> dict[int, jax.Array]:
    """`V.extract`, compiled, with the params an argument."""
    fn = jax.jit(lambda params, x: V.extract(features._replace(params=params), x, taps))
    return fn(features.params, x)


def book_optimizer(opts: StyleTransferOptions) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam with StepLR's schedule: lr * lr_decay^floor(epoch / lr_period)."""
    schedule = optax.exponential_decay(opts.lr, opts.lr_period, opts.lr_decay, staircase=True)
    return optax.adam(schedule), schedule


def _check_layers(opts: StyleTransferOptions, kinds: tuple[str, ...], source: str) -> None:
    for key in ("content_layers", "style_layers"):
        for i in getattr(opts, key):
            if not 0 <= i < len(kinds) or kinds[i] == "pool":
                convs = [j for j, k in enumerate(kinds) if k != "pool"]
                raise ConfigError(f"{source}: experiment.{key}: {i} is not a conv or ReLU module of the feature "
                                  f"network; expected one of {convs}")


def run(cfg: Config, run_dir: str | Path, source: str = "config") -> dict[str, Any]:
    """Synthesise the image; write the metrics, pictures and summary into `run_dir`."""
    opts = validate_options(StyleTransferOptions, cfg, source)
    run_dir, t_start = Path(run_dir), time.perf_counter()
    data_dir = getattr(cfg.data, "dir", None)
    shape = (opts.height, opts.width)
    content_path = F.locate_image(opts.content, data_dir, f"{source}: experiment.content")
    style_path = F.locate_image(opts.style, data_dir, f"{source}: experiment.style")
    content_img, style_img = F.read_rgb(content_path, *shape), F.read_rgb(style_path, *shape)
    notes = progress.notes(cfg.trainer.progress)
    if opts.weights is None:
        F.check_model(cfg, source)
    channels = V.VGG19 if opts.weights is not None else V.dlrun_vgg_channels(cfg.model.blocks)
    _check_layers(opts, V.layer_kinds(channels), source)  # before any training
    if opts.weights is not None:
        weights_path = F.locate_weights(opts.weights, data_dir, f"{source}: experiment.weights")
        features, about = V.load(weights_path), {"features": f"torchvision VGG-19 (ImageNet) from {weights_path}"}
    else:
        features, fsum = F.train_features(cfg, run_dir / "features", [content_img, style_img], opts.grid, opts.patch,
                                          opts.patches, opts.val_patches, source)
        about = {"features": "dlrun's VGG trained here on patches of the two images (not ImageNet's VGG-19)",
                 "features/val/acc": fsum.get("val/acc"), "features/train_seconds": fsum.get("train_seconds")}
        notes.note(f"feature network trained: val acc {fsum.get('val/acc', float('nan')):.3f}")

    x_content = jnp.asarray(F.normalise(content_img, features.mean, features.std)[None])
    x_style = jnp.asarray(F.normalise(style_img, features.mean, features.std)[None])
    contents = features_at(features, x_content, opts.content_layers)
    grams = {i: gram(y) for i, y in features_at(features, x_style, opts.style_layers).items()}
    optimizer, schedule = book_optimizer(opts)
    step = make_step(features, contents, grams, Weights(opts.content_weight, opts.style_weight, opts.tv_weight), optimizer)

    x, opt_state = x_content, optimizer.init(x_content)  # the book starts from the content image
    shown = sorted({round(e) for e in np.linspace(0, opts.epochs, opts.snapshots + 1)[1:]})
    snaps, rows, t_loop = {0: content_img}, [], time.perf_counter()
    for epoch in range(1, opts.epochs + 1):
        lr = float(schedule(epoch - 1))
        x, opt_state, parts = step(x, opt_state)
        rows.append({"epoch": epoch, **{k: float(v) for k, v in jax.device_get(parts).items()}, "lr": lr})
        if not np.isfinite(rows[-1]["total"]):
            outputs.write_metrics(run_dir / "metrics.csv", rows)
            raise TrainingDiverged(f"{source}: the loss became non-finite at epoch {epoch}; lower experiment.lr ({opts.lr})")
        if epoch in shown:
            snaps[epoch] = F.denormalise(np.asarray(x[0]), features.mean, features.std)
        if epoch % opts.log_every == 0 or epoch == opts.epochs:
            notes.note(f"epoch {epoch}: " + ", ".join(f"{k} {rows[-1][k]:.4g}" for k in ("content", "style", "tv", "total")))
    loop_seconds = time.perf_counter() - t_loop

    outputs.write_metrics(run_dir / "metrics.csv", rows)
    final = snaps[max(snaps)]
    write_png(run_dir / "synthesised.png", final)
    plot_images(run_dir / "images.png", content_img, style_img, snaps, title=f"{cfg.name}: {about['features']}")
    plot_losses(run_dir / "losses.png", rows, title=cfg.name)
    summary = {f"loss/{k}": rows[-1][k] for k in ("total", "content", "style", "tv")}
    summary |= {"loss/total_initial": rows[0]["total"], "epochs": opts.epochs, "image_shape": list(shape),
                "content_image": str(content_path), "style_image": str(style_path), **about,
                "content_layers": list(opts.content_layers), "style_layers": list(opts.style_layers),
                "loop_seconds": loop_seconds, "wall_seconds": time.perf_counter() - t_start,
                "backend": jax.default_backend()}
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def write_png(path: Path, image: np.ndarray) -> None:
    """(H, W, 3) in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
    disk.write_atomic(path, buffer.getvalue())


def plot_images(path: Path, content: np.ndarray, style: np.ndarray, snaps: dict[int, np.ndarray], title: str = "") -> None:
    """Content, style, then the synthesised image at each snapshot epoch, in one row."""
    from matplotlib.figure import Figure

    panels = [("content", content), ("style", style)] + [(f"epoch {e}", im) for e, im in sorted(snaps.items()) if e > 0]
    fig = Figure(figsize=(2.6 * len(panels), 2.6 * content.shape[0] / content.shape[1] + 0.7), layout="constrained")
    for ax, (name, image) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        ax.imshow(image)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    plots.write_figure(path, fig)


def plot_losses(path: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    """The weighted content, style and TV losses against epoch, as the book's animator shows them."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    epochs = [r["epoch"] for r in rows]
    for key, label in (("content", "content"), ("style", "style"), ("tv", "TV"), ("total", "total")):
        ax.plot(epochs, [r[key] for r in rows], label=label)
    ax.set(xlabel="epoch", ylabel="weighted loss", yscale="log", title=title or None)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    plots.write_figure(path, fig)


# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {"style_transfer": (run, StyleTransferOptions, METRICS)}
