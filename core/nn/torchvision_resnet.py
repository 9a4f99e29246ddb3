"""torchvision's ResNet-18, layer for layer, and its published weights (D2L 13.2, fine-tuning).

The book fine-tunes `torchvision.models.resnet18(pretrained=True)`: conv 7x7/2 p3 (no bias), BN,
ReLU, max-pool 3/2 p1; four stages of two BasicBlocks (conv 3x3, BN, ReLU, conv 3x3, BN, plus
the input, ReLU) of 64, 128, 256, 512 channels, the first block of each later stage of stride 2
with a 1x1/2 convolution and BN on the skip path (`downsample`); global average pooling; fc
512 -> classes. Every BN has eps 1e-5 and momentum 0.1. dlrun's own ResNet (`core.nn.cnn`,
D2L 8.6) differs: biased convolutions and a projection without BN.

Parameter paths are torchvision's module names (`layer2/0/downsample/1/gamma` is
`layer2.0.downsample.1.weight`; `fc/w` the head), so a state dict maps onto them by name:
kernels (out, in, kh, kw) -> (kh, kw, in, out) for NHWC, fc weights transposed, BN running
statistics into the model state. Training-mode BN moves the running variance toward the
batch's biased variance (PyTorch: the unbiased one); evaluation agrees exactly.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from . import layers as L
from .combinators import composite  # named children: torchvision's module names
from .conv import resolve_conv_impl
from .init import WEIGHT_INITS
from .params import path_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics torchvision's weights were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ((64, 2), (128, 2), (256, 2), (512, 2))  # (channels, BasicBlocks) of ResNet-18
WEIGHT_SUFFIXES = (".pth", ".pt", ".npz")


def _named(kind: str, children: dict[str, L.Layer]) -> L.Layer:
    """Children applied in order, each under its own name (`conv1`, `0`, `fc`)."""
    return composite(kind, children, lambda run, x, shape_mode: _chain(run, children, x))


def _chain(run, names, x):
    for name in names:
        x = run(name, x)
    return x


class _Parts:
    def __init__(self, cfg):
        self.w_init = WEIGHT_INITS[cfg.init](cfg.init_scale)
        self.impl = resolve_conv_impl(cfg.conv_impl)
        self.bn_kind = cfg.batch_norm

    def conv(self, features: int, kernel: int, padding: int, stride: int = 1) -> L.Layer:
        return L.conv2d(features, kernel, padding, stride, w_init=self.w_init, impl=self.impl, use_bias=False)

    def bn(self) -> L.Layer:
        return L.BATCH_NORMS[self.bn_kind](momentum=0.1, eps=1e-5)


def basic_block(p: _Parts, channels: int, stride: int, downsample: bool) -> L.Layer:
    """torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x)), skip the
    identity or `downsample` (conv 1x1/stride, BN)."""
    children = {"conv1": p.conv(channels, 3, 1, stride), "bn1": p.bn(), "relu": L.activation("relu"),
                "conv2": p.conv(channels, 3, 1), "bn2": p.bn()}
    if downsample:
        children["downsample"] = _named("downsample", {"0": p.conv(channels, 1, 0, stride), "1": p.bn()})

    def forward(run, x, shape_mode):
        y = run("bn2", run("conv2", run("relu", run("bn1", run("conv1", x)))))
        skip = run("downsample", x) if downsample else x
        return y if shape_mode else jax.nn.relu(y + skip)

    return composite("basic_block", children, forward)


def imagenet_normalise() -> L.Layer:
    """(x - mean) / std per channel with ImageNet's statistics (torchvision's `Normalize`), for
    RGB images in [0, 1]; part of the model so that every pipeline feeds the weights what they expect."""
    mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)

    def init(key, in_shape):
        if in_shape[-1] != 3:
            raise ValueError(f"model.normalize: imagenet expects RGB images (3 channels); the data's have {in_shape[-1]}")
        return in_shape, {}

    return L.stateless("normalize", init, lambda params, x: (x - mean) / std)


def resnet18(cfg, output_dim: int) -> L.Layer:
    """torchvision's `resnet18(num_classes=output_dim)`; NHWC (batch, H, W, C) -> logits
    (batch, output_dim). `cfg`: a `torchvision_resnet18` model section."""
    p = _Parts(cfg)
    children = {"normalize": imagenet_normalise()} if cfg.normalize == "imagenet" else {}
    children |= {"conv1": p.conv(64, 7, 3, 2), "bn1": p.bn(), "relu": L.activation("relu"),
                 "maxpool": L.pool2d("max", 3, 2, 1)}
    in_channels = 64
    for i, (width, blocks) in enumerate(STAGES):
        stride = 1 if i == 0 else 2
        children[f"layer{i + 1}"] = _named("stage", {
            str(j): basic_block(p, width, stride if j == 0 else 1, j == 0 and (stride != 1 or in_channels != width))
            for j in range(blocks)})  # fmt: skip
        in_channels = width
    children |= {"avgpool": L.global_avg_pool(), "fc": L.dense(output_dim, p.w_init)}
    return _named("torchvision_resnet18", children)


# ------------------------------------------------------------------ the weights


# the last part of a dlrun path -> torchvision's name for it
_TORCH_LEAF = {("params", "w"): "weight", ("params", "b"): "bias", ("params", "gamma"): "weight",
               ("params", "beta"): "bias", ("model_state", "mean"): "running_mean", ("model_state", "var"): "running_var"}


def torch_key(part: str, name: str) -> str:
    """`("params", "layer1/0/conv1/w")` -> `layer1.0.conv1.weight`."""
    *modules, leaf = name.split("/")
    return ".".join([*modules, _TORCH_LEAF[(part, leaf)]])


def to_dlrun_layout(array: np.ndarray) -> np.ndarray:
    """A torch parameter in dlrun's layout: conv kernels (out, in, kh, kw) -> (kh, kw, in, out),
    linear weights (out, in) -> (in, out); vectors as they are."""
    array = np.asarray(array, np.float32)
    return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T if array.ndim == 2 else array


def expected_arrays(num_classes: int = 1000) -> dict[str, tuple[str, tuple[int, ...]]]:
    """torch key -> (dlrun's named path, dlrun's shape) of every array of `resnet18(num_classes)`."""
    from dlrun.core.config.torchvision import TorchvisionResNetModel  # core.config imports no JAX; no cycle

    net = resnet18(TorchvisionResNetModel(normalize="none"), num_classes)
    _, params, state = jax.eval_shape(lambda k: net.init(k, (224, 224, 3)), jax.random.PRNGKey(0))
    out = {}
    for part, tree in (("params", params), ("model_state", state)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            name = path_name(path)
            out[torch_key(part, name)] = (f"{part}/{name}", tuple(leaf.shape))
    return out


def read_state_dict(path: str | Path, source: str = "weights") -> dict[str, np.ndarray]:
    """The arrays of a state dict saved by `torch.save(model.state_dict(), path)` (.pth, .pt:
    read with torch, which must then be installed) or by `save_npz` (.npz: no torch needed).

    Raises:
        ConfigError: no such file, another suffix, torch missing for a .pth, or an unreadable file.
    """
    path = Path(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"{source}: {path}: expected a state dict file ({', '.join(WEIGHT_SUFFIXES)})")
    if not path.is_file():
        raise ConfigError(f"{source}: {path} does not exist; save torchvision's weights there with "
                          "torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), path)")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        try:
            import torch
        except ImportError:
            raise ConfigError(f"{source}: reading {path} needs torch; convert it to .npz where torch is installed "
                              "(dlrun.core.nn.torchvision_resnet.save_npz)") from None
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as err:  # torch: the last three
        raise ConfigError(f"{source}: {path} cannot be read as a state dict ({type(err).__name__}: {err})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: {path} holds a {type(loaded).__name__}, expected a state dict (model.state_dict())")
    return {k: v.detach().cpu().numpy() for k, v in loaded.items() if hasattr(v, "detach")}


def save_npz(state_dict_path: str | Path, npz_path: str | Path) -> Path:
    """Convert a torch state dict file to an .npz of the same keys, so training needs no torch."""
    from .. import disk

    arrays = read_state_dict(state_dict_path)
    with disk.atomic_file(Path(npz_path)) as f:
        np.savez(f, **arrays)
    return Path(npz_path)


def named_from_state_dict(state_dict: dict[str, np.ndarray], source: str = "weights") -> dict[str, np.ndarray]:
    """dlrun's named arrays (`params/layer1/0/conv1/w`, `model_state/bn1/mean`: the form of a
    run's params.npz) from a torchvision resnet18 state dict; the class count is its fc's.
    `num_batches_tracked` counters are left out (nothing here uses them).

    Raises:
        ConfigError: naming each missing key and each key of another shape.
    """
    if "fc.weight" not in state_dict or np.ndim(state_dict["fc.weight"]) != 2:
        raise ConfigError(f"{source}: missing key fc.weight (a 2-D array: the classifier of a resnet18 state dict)")
    expected = expected_arrays(int(np.shape(state_dict["fc.weight"])[0]))
    missing = [k for k in expected if k not in state_dict]
    shapes = [f"{k} {tuple(np.shape(state_dict[k]))} (expected {torch_shape(shape)})"
              for k, (_, shape) in expected.items() if k in state_dict and to_dlrun_layout(state_dict[k]).shape != shape]
    if missing or shapes:
        problems = ([f"missing keys: {', '.join(missing[:8])}"] if missing else []) + \
                   ([f"keys of another shape: {', '.join(shapes[:8])}"] if shapes else [])
        raise ConfigError(f"{source}: not a torchvision resnet18 state dict: {'; '.join(problems)}")
    return {name: to_dlrun_layout(state_dict[k]) for k, (name, _) in expected.items()}


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape of an array of dlrun's `shape` (`to_dlrun_layout` undone)."""
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(shape[::-1])


def write_as_run(weights: str | Path, run_dir: str | Path, source: str = "weights") -> Path:
    """A directory holding `weights` as a run's params.npz, so that `init_from: {run: run_dir}`
    starts a model from torchvision's weights through the usual path (`core.training.transfer`)."""
    from .. import disk
    from ..training.transfer import PARAMS_FILE

    named = named_from_state_dict(read_state_dict(weights, source), f"{source}: {weights}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with disk.atomic_file(run_dir / PARAMS_FILE) as f:
        np.savez(f, **named)
    return run_dir
