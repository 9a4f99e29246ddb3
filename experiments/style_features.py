"""The images and the feature network of neural style transfer (D2L 13.12).

An image is named by a file (a path, or a name looked up in the data directories, as every data
file is) or by `matplotlib:<name>`, a file of matplotlib's sample data, which ships with it: the
CPU config's content is the photo of Grace Hopper there, its style the colourful drawing of a
blue gift (the book's rainier.jpg and autumn-oak.jpg do not ship with any package).

The book reads VGG-19's ImageNet features. Without those weights, `train_features` trains
dlrun's own VGG (`core.nn.cnn.vgg`, the config's `model`) through the one training loop on a task
that needs colour and texture: tell which cell of a grid over which image a patch was cut from
(patches at random offsets, at random brightness), inputs normalised as ImageNet's VGG expects.
Its conv blocks then serve as the features stack (`core.nn.torchvision_vgg.from_dlrun_vgg`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from dlrun.core.config import Config, ConfigError, VGGModel, derive
from dlrun.core.data import Dataset
from dlrun.core.data.files import RemoteFile, find_or_fetch, search_dirs
from dlrun.core.errors import DataNotFoundError
from dlrun.core.nn import torchvision_vgg as V
from dlrun.core.training.train import train

TORCHVISION_VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# the book's pictures, from its repository (fetched into the cache with these sha1s when allowed)
BOOK_IMAGES = {
    name: RemoteFile(name, f"https://raw.githubusercontent.com/d2l-ai/d2l-en/master/img/{name}", sha1)
    for name, sha1 in (("rainier.jpg", "b0193ffd8ecea1631ac1092130017b884faafa30"),
                       ("autumn-oak.jpg", "bbe11f01403b9726bbc625589550e574fc45980a"))
}


def locate_image(name: str, data_dir: str | None, key: str) -> Path:
    """The file an image option names: `matplotlib:<file>`, a path, or a name in the data dirs.

    Raises:
        ConfigError: no such sample file or file, naming `key`.
        DataNotFoundError: a book image found nowhere and not downloadable (says where to put it).
    """
    if name.startswith("matplotlib:"):
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / name.split(":", 1)[1]
        if not path.is_file():
            raise ConfigError(f"{key}: matplotlib has no sample file {path.name} (looked in {path.parent})")
        return path
    if name in BOOK_IMAGES:
        return find_or_fetch(BOOK_IMAGES[name], data_dir)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for d in search_dirs(data_dir):
        if (d / name).is_file():
            return d / name
    raise ConfigError(f"{key}: no image file {name}; expected a path, a file in the data directories, or matplotlib:<file>")


def locate_weights(name: str, data_dir: str | None, key: str) -> Path:
    """The VGG-19 weights file `weights` names: a path, or a name in the data directories or
    torch's hub cache (where torchvision keeps `vgg19-dcbb9e9d.pth`).

    Raises:
        DataNotFoundError: found nowhere; the message says where to put it.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    dirs = [*search_dirs(data_dir), Path.home() / ".cache" / "torch" / "hub" / "checkpoints"]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    looked = "\n".join(f"  {d}" for d in dirs)
    raise DataNotFoundError(
        f"{key}: weights file {name} not found; looked in:\n{looked}\nDownload torchvision's VGG-19 weights "
        f"({TORCHVISION_VGG19_URL}) and put the file in one of those directories, or give its path.")


def read_rgb(path: Path, height: int, width: int) -> np.ndarray:
    """The image as float32 (height, width, 3) in [0, 1], resized bilinearly (torchvision's
    Resize((h, w)) of the book); transparency is laid over white.

    Raises:
        ConfigError: not an image Pillow can read, naming the file.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGBA")
            flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
            flat.alpha_composite(image)
            array = np.asarray(flat.convert("RGB").resize((width, height), Image.BILINEAR), np.float32)
    except (OSError, ValueError, SyntaxError) as err:
        raise ConfigError(f"{path}: not an image Pillow can read ({err})") from None
    return array / 255.0


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(..., 3) in [0, 1] -> the network's input (the book's `preprocess`, after the resize)."""
    return ((image - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def denormalise(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The network's input back to an image in [0, 1], clipped (the book's `postprocess`)."""
    return np.clip(x * np.asarray(std, np.float32) + np.asarray(mean, np.float32), 0.0, 1.0)


def patch_dataset(images: Sequence[np.ndarray], grid: int, patch: int, n_train: int, n_val: int, seed: int) -> Dataset:
    """Patches labelled by (image, grid cell): class = image * grid^2 + row * grid + column.

    Each image is resized to a square of grid * patch pixels; a patch is cut with its centre
    within a quarter of a cell from its cell's centre (clipped at the borders), scaled by a
    brightness in [0.8, 1.2], and normalised with ImageNet's mean and std.

    Args:
        images: (H_i, W_i, 3) in [0, 1].

    Returns:
        x (n, patch, patch, 3) float32, y (n,) int32, len(images) * grid^2 classes.
    """
    from PIL import Image

    side = grid * patch
    squares = [np.asarray(Image.fromarray((im * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR),
                          np.float32) / 255 for im in images]
    rng = np.random.default_rng([seed, 13_12])
    n = n_train + n_val
    labels = rng.integers(0, len(images) * grid * grid, n)
    which, cell = labels // (grid * grid), labels % (grid * grid)
    offsets = rng.integers(-(patch // 4), patch // 4 + 1, (n, 2))
    tops = np.clip((cell // grid) * patch + offsets[:, 0], 0, side - patch)
    lefts = np.clip((cell % grid) * patch + offsets[:, 1], 0, side - patch)
    x = np.stack([squares[i][t : t + patch, s : s + patch] for i, t, s in zip(which, tops, lefts)])
    x = np.clip(x * rng.uniform(0.8, 1.2, (n, 1, 1, 1)), 0, 1)
    x = normalise(x, V.IMAGENET_MEAN, V.IMAGENET_STD)
    y = labels.astype(np.int32)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=len(images) * grid * grid,
                   meta={"task": "which cell of which image a patch is from"})


def check_model(cfg: Config, source: str) -> None:
    """Raises ConfigError unless the model is dlrun's VGG, whose conv blocks become the features."""
    if not isinstance(cfg.model, VGGModel):
        raise ConfigError(f"{source}: model.name: style transfer reads a VGG's conv blocks; expected vgg, found '{cfg.model.name}'")


def train_features(cfg: Config, run_dir: Path, images: Sequence[np.ndarray], grid: int, patch: int,
                   n_train: int, n_val: int, source: str) -> tuple[V.Features, dict]:
    """Train `cfg.model` (dlrun's VGG) on `patch_dataset` for `cfg.trainer.epochs` through the
    one training loop, in `run_dir`; its conv blocks as a features stack, and the run's summary.

    Raises:
        ConfigError: a model other than vgg.
    """
    check_model(cfg, source)
    data = patch_dataset(images, grid, patch, n_train, n_val, cfg.seed)
    sub = derive(cfg, {"name": run_dir.name, "trainer.progress": "none", "trainer.checkpoint_every": 0}, source)
    result = train(sub, run_dir, data=data, key=jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 13_12), plot=True)
    return V.from_dlrun_vgg(result.state.params, cfg.model.blocks), result.summary
