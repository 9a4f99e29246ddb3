"""Image augmentation (D2L 13.1): the book's demos on a photo, training with and without.

`augmentation_demo` draws the book's grids of 13.1.1 on one RGB photo, each change run by the
same device-side functions that augment training batches (`core.data.pipeline`, `crops`,
`colour`). `augmentation_train` trains the config's model twice through the one training loop
(13.1.2), with the config's `data.augment` and with none, on the same data, seed and
initialisation, and reports both accuracies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import AugmentConfig, Config, ConfigError, Section, derive, validate_options
from dlrun.core.data import pipeline
from dlrun.core.data.colour import colour_jitter
from dlrun.core.data.crops import random_resized_crop
from dlrun.core.data.images import read_photo
from dlrun.core.report import plots, progress

BOOK_SHAPE_AUG = {"size": (200, 200), "scale": (0.1, 1.0), "ratio": (0.5, 2.0)}  # the book's RandomResizedCrop


class AugmentationDemoOptions(Section):
    """The keys beside `experiment.name: augmentation_demo`."""

    image: str | None = Field(None, description="an RGB photo to augment (default: matplotlib's grace_hopper.jpg)")
    rows: int = Field(2, gt=0, description="rows of each grid (the book's 2)")
    cols: int = Field(4, gt=0, description="columns of each grid (the book's 4)")


class AugmentationTrainOptions(Section):
    """The keys beside `experiment.name: augmentation_train`."""

    without: bool = Field(True, description="also train the same model without augmentation (the book's exercise 1)")


def load_photo(image: str | None) -> tuple[np.ndarray, str]:
    """(1, H, W, 3) float32 in [0, 1] of `image` or matplotlib's grace_hopper.jpg, and where it
    came from (`core.data.images.read_photo`)."""
    pixels, origin = read_photo(image)
    return pixels[None].astype(np.float32) / 255.0, origin


def demos(key: jax.Array, photo: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The book's grids (D2L 13.1.1): name -> n augmented copies (n, h, w, 3) of `photo`."""
    x = jnp.repeat(photo, n, axis=0)
    k = dict(zip(("flip", "vertical_flip", "crop", "brightness", "hue", "jitter", "combined"), jax.random.split(key, 7)))
    jitter = AugmentConfig(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5)

    def colour(key, images, cfg):
        return colour_jitter(*jax.random.split(key), images, cfg)

    k_flip, k_colour, k_shape = jax.random.split(k["combined"], 3)  # the book's Compose([flip, colour, shape])
    combined = colour(k_colour, pipeline.random_flip(k_flip, x), jitter)
    return {
        "flip": pipeline.random_flip(k["flip"], x),
        "vertical_flip": pipeline.random_vertical_flip(k["vertical_flip"], x),
        "resized_crop": random_resized_crop(k["crop"], x, **BOOK_SHAPE_AUG),
        "brightness": colour(k["brightness"], x, AugmentConfig(brightness=0.5)),
        "hue": colour(k["hue"], x, AugmentConfig(hue=0.5)),
        "colour_jitter": colour(k["jitter"], x, jitter),
        "combined": random_resized_crop(k_shape, combined, **BOOK_SHAPE_AUG),
    }


TITLES = {
    "flip": "RandomHorizontalFlip", "vertical_flip": "RandomVerticalFlip",
    "resized_crop": "RandomResizedCrop((200, 200), scale=(0.1, 1), ratio=(0.5, 2))",
    "brightness": "ColorJitter(brightness=0.5)", "hue": "ColorJitter(hue=0.5)",
    "colour_jitter": "ColorJitter(0.5, 0.5, 0.5, 0.5)", "combined": "flip, colour jitter, resized crop",
}  # fmt: skip


def run_demo(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write photo.png and one grid PNG per augmentation of the book, and summary.json."""
    opts = validate_options(AugmentationDemoOptions, cfg, source)
    photo, origin = load_photo(opts.image)
    grids = jax.jit(demos, static_argnums=2)(jax.random.PRNGKey(cfg.seed), photo, opts.rows * opts.cols)
    notes = progress.notes(cfg.trainer.progress)
    _grid(run_dir / "photo.png", photo, 1, 1, "the photo")
    files, shapes = {}, {}
    for name, images in grids.items():
        images = np.asarray(images)
        if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
            raise ValueError(f"augmentation {name} left [0, 1]: {images.min()}..{images.max()}")  # a bug, never bad input
        files[name], shapes[name] = f"{name}.png", list(images.shape)
        _grid(run_dir / files[name], images, opts.rows, opts.cols, TITLES[name])
        notes.note(f"{files[name]}: {len(images)} images of {images.shape[1]}x{images.shape[2]}")
    summary = {"photo": origin, "photo_shape": list(photo.shape[1:]), "grids": files, "grid_shapes": shapes, "images_per_grid": opts.rows * opts.cols}
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def _grid(path: Path, images: np.ndarray, rows: int, cols: int, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    fig = Figure(figsize=(1.8 * cols, 1.8 * rows * images.shape[1] / images.shape[2] + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax, image in zip(axes, images):
        ax.imshow(np.clip(image, 0, 1))
        ax.set_axis_off()
    fig.suptitle(title, fontsize="small")
    plots.write_figure(path, fig)


# ------------------------------------------------------------------ training with and without


def run_train(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Train `cfg` with its augmentation (run_dir/augmented) and, with `without`, with none
    (run_dir/plain); summary.json holds each run's final metrics under its name and the gain
    in validation accuracy.

    Raises:
        ConfigError: a data section without `augment`, or with nothing switched on.
    """
    from dlrun.core.data.registry import load_dataset
    from dlrun.core.training.train import train

    opts = validate_options(AugmentationTrainOptions, cfg, source)
    aug = getattr(cfg.data, "augment", None)
    if aug is None or not aug.active():
        raise ConfigError(f"{source}: data.augment: augmentation_train compares training with and without augmentation; "
                          f"expected an image data set with some augmentation switched on (flip, crop_padding, ...)")
    data = load_dataset(cfg.data, cfg.seed)  # loaded once: both runs see the same images
    variants = {"augmented": {}, **({"plain": {"data.augment": AugmentConfig()}} if opts.without else {})}
    summary: dict[str, Any] = {}
    notes = progress.notes(cfg.trainer.progress)
    for name, changes in variants.items():
        sub = derive(cfg, {"name": f"{cfg.name}_{name}", "trainer.progress": "none", **changes}, source)
        result = train(sub, run_dir / name, data=data, key=jax.random.PRNGKey(cfg.seed), plot=True)
        final = {k: v for k, v in result.summary.items() if k.startswith(("train/", "val/"))}
        summary |= {f"{name}/{k}": v for k, v in final.items()} | {f"{name}/train_seconds": result.summary["train_seconds"]}
        notes.note(f"{name}: " + "  ".join(f"{k} {v:.4f}" for k, v in final.items()))
    if opts.without and "augmented/val/acc" in summary:
        summary["val/acc_gain"] = summary["augmented/val/acc"] - summary["plain/val/acc"]
    summary |= {"epochs": cfg.trainer.epochs, "augment": aug.model_dump(mode="json")}
    disk.write_json(run_dir / "summary.json", summary)
    return summary


EXPERIMENTS: dict = {
    "augmentation_demo": (run_demo, AugmentationDemoOptions, ()),
    "augmentation_train": (run_train, AugmentationTrainOptions,
                           ("augmented/val/acc", "plain/val/acc", "augmented/train/acc", "plain/train/acc", "val/acc_gain")),
}
