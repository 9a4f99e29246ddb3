"""A VGG `features` stack laid out as torchvision's `nn.Sequential`, for neural style transfer
(D2L 13.12), which reads a pretrained VGG-19's activations at given module indices.

The stack is a tuple of layer kinds ("conv" 3x3 padding 1, "relu", "pool" max 2/2) numbered as
torchvision numbers its modules, so that the book's indices mean the same layers here: for
VGG-19, 0 is conv1_1, 5 conv2_1, 10 conv3_1, 19 conv4_1, 25 conv4_4 and 28 conv5_1. Params map
each conv's index (a string) to `{"w": (3, 3, C_in, C_out), "b": (C_out,)}`; x is NHWC.

Weights come from torchvision's VGG-19 state dict (`features.<i>.weight`, `features.<i>.bias`,
OIHW), read with torch when it is installed, or from an .npz holding the same keys; or from a
VGG that dlrun trained (`from_dlrun_vgg`), whose blocks are the same conv-ReLU-pool sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from . import conv as C

# torchvision's `cfgs["E"]`: channels of each 3x3 conv (each followed by a ReLU), "M" a max-pool 2/2
VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what torchvision's VGG-19 expects its RGB input normalised by
IMAGENET_STD = (0.229, 0.224, 0.225)


class Features(NamedTuple):
    """A features stack: its layer kinds in torchvision's numbering, its conv params by index,
    and the per-channel mean and std its RGB input in [0, 1] is normalised by."""

    kinds: tuple[str, ...]
    params: dict[str, dict[str, jax.Array]]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def layer_kinds(channels=VGG19) -> tuple[str, ...]:
    """("conv", "relu", ..., "pool") for a torchvision `cfgs` list: each number a conv then a ReLU."""
    return tuple(k for c in channels for k in (("pool",) if c == "M" else ("conv", "relu")))


def conv_shapes(channels=VGG19, in_channels: int = 3) -> dict[str, tuple[int, int, int, int]]:
    """Each conv's index -> its HWIO weight shape."""
    shapes, index, c_in = {}, 0, in_channels
    for c in channels:
        if c == "M":
            index += 1
            continue
        shapes[str(index)] = (3, 3, c_in, c)
        index, c_in = index + 2, c
    return shapes


def init_params(key: jax.Array, channels=VGG19, in_channels: int = 3) -> dict[str, dict[str, jax.Array]]:
    """Random He-normal weights and zero biases (a stand-in where no trained weights are given)."""
    params = {}
    for i, (index, shape) in enumerate(conv_shapes(channels, in_channels).items()):
        fan_in = shape[0] * shape[1] * shape[2]
        w = jax.random.normal(jax.random.fold_in(key, i), shape) * jnp.sqrt(2.0 / fan_in)
        params[index] = {"w": w, "b": jnp.zeros(shape[-1])}
    return params


def extract(features: Features, x: jax.Array, taps: tuple[int, ...]) -> dict[int, jax.Array]:
    """The activations at module indices `taps`, as the book's `extract_features` collects them.

    The network runs modules 0..max(taps) only. torchvision's ReLU is in place, so in the book a
    conv's stored output is overwritten by the ReLU after it when the truncated network has one:
    a tapped conv is seen after its ReLU, except the last module (VGG-19's conv5_1 at 28), whose
    ReLU is not run. This reproduces that.

    Args:
        x: (batch, H, W, 3), already normalised by `features.mean` and `features.std`.
        taps: module indices, each below len(features.kinds).

    Returns:
        index -> (batch, H_i, W_i, C_i).
    """
    last = max(taps)
    if last >= len(features.kinds):
        raise ValueError(f"tap {last} is past the network's {len(features.kinds)} modules")
    out = {}
    for i, kind in enumerate(features.kinds[: last + 1]):
        if kind == "conv":
            p = features.params[str(i)]
            x = C.conv2d(x, p["w"], 1) + p["b"]
        elif kind == "relu":
            x = jax.nn.relu(x)
        else:
            x = C.pool2d(x, "max", 2)
        if i in taps:
            runs_relu = i < last and features.kinds[i + 1] == "relu"
            out[i] = jax.nn.relu(x) if kind == "conv" and runs_relu else x
    return out


def from_state_dict(state: Mapping[str, np.ndarray], channels=VGG19, source: str = "weights") -> dict[str, dict[str, jax.Array]]:
    """torchvision's arrays (`features.<i>.weight` OIHW and `.bias`, or the same keys without
    `features.`) as params; classifier keys are ignored.

    Raises:
        ConfigError: a missing key or a shape other than the architecture's, naming `source`.
    """
    params = {}
    for index, (kh, kw, c_in, c_out) in conv_shapes(channels).items():
        arrays = {}
        for name, shape in (("weight", (c_out, c_in, kh, kw)), ("bias", (c_out,))):
            key = next((k for k in (f"features.{index}.{name}", f"{index}.{name}") if k in state), None)
            if key is None:
                raise ConfigError(f"{source}: has no features.{index}.{name}; expected torchvision's VGG-19 state dict keys")
            value = np.asarray(state[key], np.float32)
            if value.shape != shape:
                raise ConfigError(f"{source}: {key} has shape {value.shape}; VGG-19 expects {shape}")
            arrays[name] = value
        params[index] = {"w": jnp.asarray(arrays["weight"].transpose(2, 3, 1, 0)), "b": jnp.asarray(arrays["bias"])}
    return params


def load(path: str | Path, channels=VGG19) -> Features:
    """VGG-19 features from torchvision's weights file (`vgg19-dcbb9e9d.pth`, read with torch)
    or an .npz of the same keys.

    Raises:
        ConfigError: an unreadable file, a .pth without torch installed, or wrong keys or shapes.
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as npz:
            state = {k: npz[k] for k in npz.files}
    else:
        try:
            import torch
        except ImportError:
            raise ConfigError(f"{path}: reading a .pth file needs torch; install it, or save the state dict "
                              "as an .npz of the same keys (numpy.savez)") from None
        try:
            state = {k: v.numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
            raise ConfigError(f"{path}: not a readable torch state dict ({type(err).__name__}: {err})") from None
    return Features(layer_kinds(channels), from_state_dict(state, channels, str(path)))


def dlrun_vgg_channels(blocks) -> tuple:
    """dlrun's VGG blocks ((convs, channels), ...) as a torchvision `cfgs` list."""
    return tuple(c for convs, ch in blocks for c in (*([ch] * convs), "M"))


def from_dlrun_vgg(params: Mapping, blocks, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Features:
    """The conv blocks of dlrun's VGG (`core.nn.cnn.vgg`: params `vgg_block<b>/conv<j>`) as a
    features stack; its dense head is dropped. `blocks`: the model's ((convs, channels), ...)."""
    channels = dlrun_vgg_channels(blocks)
    out, index = {}, 0
    for b, (convs, _) in enumerate(blocks):
        for j in range(convs):
            out[str(index)] = dict(params[f"vgg_block{b}"][f"conv{j}"])
            index += 2
        index += 1
    return Features(layer_kinds(channels), out, tuple(mean), tuple(std))
