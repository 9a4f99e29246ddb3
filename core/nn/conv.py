"""2-D convolution and pooling on NHWC arrays, in the formulation that is fastest per backend.

Three convolutions compute the same function (D2L 7.2-7.4, cross-correlation with zero padding
and a stride; kernel, padding and stride are an int or a (height, width) pair):

- `conv2d_xla`: one `lax.conv_general_dilated`; XLA differentiates it. The right choice on GPUs
  and TPUs, where XLA calls cuDNN or its own tuned kernels.
- `conv2d_cpu`: the same forward, but each part of the gradient written as what XLA's CPU backend
  runs fast, tied together with `jax.custom_vjp`; a 1x1 kernel is a matmul. XLA's own gradient
  of a convolution runs a generic kernel on the CPU, slowest inside a `lax.scan` (a whole epoch
  as one program). Forward plus both gradients at batch 128 on a 2-core CPU, jax 0.10.2,
  milliseconds per call inside a scan (`python benchmarks/conv.py` prints this and more):

  | shape | XLA | this module |
  |---|---|---|
  | 3x3 pad 1, 16 -> 16, 28x28 | 783 | 22 |
  | 3x3 pad 1, 32 -> 32, 14x14 | 861 | 25 |
  | 3x3 pad 1, 64 -> 64, 7x7 | 362 | 18 |
  | 3x3 pad 1 stride 2, 16 -> 32, 14x14 | 50 | 2 |
  | 1x1, 64 -> 128, 14x14 | 756 | 7 |
  | 5x5 pad 2, 1 -> 6, 28x28 (LeNet) | 24 | 14 |

  The parts: forward: XLA's convolution, except with one input channel (shifted slices and
  fused multiply-adds) and for outputs of at most 16 positions (the stacked windows times the
  kernel, one matmul: `IM2COL_MAX_POSITIONS`); filter gradient: the cotangent's transpose times
  the shifted (strided) views of the input side by side, one matmul per kernel row
  (`_filter_grad`); input gradient: with stride 1, a convolution, chosen the same way, of the
  padded cotangent with the flipped kernel; with a stride, the cotangent times the kernel, its
  parts added back where they came from (`_scatter_input_grad`).

- `conv2d_onednn`: oneDNN's kernels, which PyTorch's CPU convolutions run on, called through
  XLA's FFI (`core/nn/onednn.py`); what `auto` picks on a CPU where it is installed. 1.2-2x the
  speed of `conv2d_cpu` over whole LeNet and ResNet epochs (docs/performance.md).

Pooling with window == stride that divides the input is a reshape and a reduction, whose
gradient is a broadcast, instead of `lax.reduce_window` and its scatter-like transpose.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import ConfigError

_DIMS = ("NHWC", "HWIO", "NHWC")
ConvImpl = Literal["xla", "cpu", "onednn"]
Pair = int | tuple[int, int]


def pair(v: Pair) -> tuple[int, int]:
    """3 -> (3, 3); (5, 3) stays."""
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def out_size(size: int, window: int, padding: int = 0, stride: int = 1) -> int:
    """Output length along one axis: (size + 2 padding - window) // stride + 1 (D2L 7.3)."""
    return (size + 2 * padding - window) // stride + 1


def out_hw(hw: tuple[int, int], window: Pair, padding: Pair = 0, stride: Pair = 1) -> tuple[int, int]:
    """`out_size` along height and width."""
    return tuple(out_size(s, k, p, t) for s, k, p, t in zip(hw, pair(window), pair(padding), pair(stride)))


def default_conv_impl(backend: str | None = None) -> ConvImpl:
    """On the CPU backend `onednn` where oneDNN's convolution can run (`core/nn/onednn.py`) and
    the process has one device (XLA cannot split its calls over several: each device would
    convolve the whole batch), else `cpu`; `xla` on other backends."""
    if (backend or jax.default_backend()) != "cpu":
        return "xla"
    from .onednn import available

    return "onednn" if jax.device_count() == 1 and available()[0] else "cpu"


def resolve_conv_impl(name: str) -> ConvImpl:
    """A config's `conv_impl`: `auto` is `default_conv_impl()`; `onednn` must be able to run here.

    Raises:
        ConfigError: `onednn` where oneDNN's convolution cannot be built or loaded (the reason).
    """
    if name == "auto":
        return default_conv_impl()
    if name == "onednn":
        from .onednn import available

        ok, why = available()
        if not ok:
            raise ConfigError(f"model.conv_impl: 'onednn' cannot run here: {why}")
    return name


def _pad(x: jax.Array, padding: Pair) -> jax.Array:
    ph, pw = pair(padding)
    return jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0))) if ph or pw else x


def conv2d_xla(x: jax.Array, w: jax.Array, padding: Pair = 0, stride: Pair = 1) -> jax.Array:
    """x: (batch, H, W, C_in), w: (kh, kw, C_in, C_out) -> (batch, H', W', C_out), H' = out_size."""
    ph, pw = pair(padding)
    return lax.conv_general_dilated(x, w, pair(stride), [(ph, ph), (pw, pw)], dimension_numbers=_DIMS)


def _windows(xp: jax.Array, kh: int, kw: int, stride: tuple[int, int]) -> list[list[jax.Array]]:
    """The kh x kw shifted (strided) views of a padded input, each of the output's spatial size."""
    sh, sw = stride
    h, w = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    return [[xp[:, i : i + sh * (h - 1) + 1 : sh, j : j + sw * (w - 1) + 1 : sw, :] for j in range(kw)] for i in range(kh)]


# At most this many output positions per image, a valid convolution is one matmul of the stacked
# windows (im2col): XLA's CPU convolution spends 66 ms where that takes 9 on 2x2 outputs of
# 128 -> 128 channels at batch 256, and 126 against 24 for the input gradient there; at 7x7
# outputs XLA's is the faster (5.0 against 7.0 ms for 32 -> 32). Alone, XLA's looked faster at
# 4x4 as well, but the CPU ResNet's whole step took 191 ms with a limit of 4 against 105 with 16.
IM2COL_MAX_POSITIONS = 16


def _valid_conv(xp: jax.Array, w: jax.Array, stride: tuple[int, int] = (1, 1)) -> jax.Array:
    """A convolution without padding, by the formulation measured faster for its size."""
    kh, kw, c_in, c_out = w.shape
    views = _windows(xp, kh, kw, stride)
    out_h, out_w = views[0][0].shape[1:3]
    if out_h * out_w > IM2COL_MAX_POSITIONS:
        return conv2d_xla(xp, w, 0, stride)
    cols = jnp.concatenate([v for row in views for v in row], axis=-1)  # (B, H', W', kh*kw*C_in)
    return cols @ w.reshape(kh * kw * c_in, c_out)


def _forward(xp: jax.Array, w: jax.Array, stride: tuple[int, int]) -> jax.Array:
    kh, kw, c_in, c_out = w.shape
    if c_in > 1:
        return _valid_conv(xp, w, stride)
    # One input channel: XLA's convolution leaves the 25-element dot products to a slow generic
    # kernel; 25 fused multiply-adds over shifted views are one vectorised loop.
    out = 0.0
    for i, row in enumerate(_windows(xp, kh, kw, stride)):
        for j, view in enumerate(row):
            out = out + view * w[i, j, 0]
    return out


# At most this many patch columns (kh*kw*C_in), the filter gradient is one matmul over all of
# them; above, one per kernel row (`_filter_grad`).
ONE_MATMUL_MAX_COLUMNS = 16


def _filter_grad(xp: jax.Array, g: jax.Array, kh: int, kw: int, stride: tuple[int, int]) -> jax.Array:
    """dL/dw[i, j, c, o] = sum over batch and positions of xp[b, s h + i, s w + j, c] * g[b, h, w, o].

    g's transpose times the shifted views side by side, (C_out, B*H*W) @ (B*H*W, kw*C_in), one
    matmul per kernel row: the whole (B*H*W, kh*kw*C_in) patch matrix costs more to write than
    its matmul (24.5 against 4.6 ms at 14x14, 16 -> 16, batch 256, inside a scan). A small patch
    (a 3x3 kernel on one channel) is one matmul (2.3 against 6.0 ms at 28x28)."""
    c_in, c_out = xp.shape[-1], g.shape[-1]
    views = _windows(xp, kh, kw, stride)
    groups = [[v for row in views for v in row]] if kh * kw * c_in <= ONE_MATMUL_MAX_COLUMNS else views
    g2 = g.reshape(-1, c_out).T
    parts = [g2 @ jnp.concatenate(group, axis=-1).reshape(-1, len(group) * c_in) for group in groups]
    return jnp.concatenate(parts, axis=1).reshape(c_out, kh, kw, c_in).transpose(1, 2, 3, 0)


def _input_grad(g: jax.Array, w: jax.Array, in_hw: tuple[int, int], padding: tuple[int, int],
                stride: tuple[int, int]) -> jax.Array:
    """dL/dx of the unpadded input: a full convolution of g, dilated by the stride, with the kernel
    flipped and its channels swapped, cropped to the input's own positions (the padding's share is
    never computed: on 2x2 outputs it is 3/4 of the work); rows and columns the stride skipped get
    zero gradient. With a stride, `_scatter_input_grad` instead."""
    kh, kw = w.shape[:2]
    (sh, sw), (h, wd), (ph, pw) = stride, in_hw, padding
    if sh > 1 or sw > 1:
        return _scatter_input_grad(g, w, in_hw, padding, stride)
    # lax.pad crops where a padding is negative (padding > kernel - 1)
    gp = lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), (kh - 1 - ph, h + ph - g.shape[1], 0), (kw - 1 - pw, wd + pw - g.shape[2], 0), (0, 0, 0)))
    return _valid_conv(gp, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))


def _scatter_input_grad(g: jax.Array, w: jax.Array, in_hw: tuple[int, int], padding: tuple[int, int],
                        stride: tuple[int, int]) -> jax.Array:
    """dL/dx for a strided convolution: each output position's gradient times the kernel (one
    matmul, no multiplications by the zeros a stride-dilated g would hold), its kh x kw parts
    added into the input positions they came from (col2im), the padding's cropped off. XLA
    rewrites the dilated form into a convolution that took 37 of a 180 ms step of the CPU ResNet
    (4x4 -> 2x2, 64 -> 128 channels)."""
    kh, kw, c_in, c_out = w.shape
    (sh, sw), (h, wd), (ph, pw) = stride, in_hw, padding
    b, out_h, out_w = g.shape[:3]
    parts = (g.reshape(-1, c_out) @ w.reshape(-1, c_out).T).reshape(b, out_h, out_w, kh, kw, c_in)
    zero, dx = jnp.zeros((), g.dtype), 0.0
    for i in range(kh):
        for j in range(kw):
            dx = dx + lax.pad(parts[:, :, :, i, j, :], zero, ((0, 0, 0), (i - ph, h + ph - i - (out_h - 1) * sh - 1, sh - 1),
                                                             (j - pw, wd + pw - j - (out_w - 1) * sw - 1, sw - 1), (0, 0, 0)))
    return dx


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, padding: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    return _forward(_pad(x, padding), w, stride)


def _conv_fwd(x, w, padding, stride):
    return _conv(x, w, padding, stride), (x, w)


def _conv_bwd(padding, stride, residuals, g):
    x, w = residuals
    # The input gradient of a first layer is unused and removed by XLA as dead code.
    return (_input_grad(g, w, x.shape[1:3], padding, stride),
            _filter_grad(_pad(x, padding), g, w.shape[0], w.shape[1], stride))


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d_cpu(x: jax.Array, w: jax.Array, padding: Pair = 0, stride: Pair = 1) -> jax.Array:
    """`conv2d_xla`'s function with gradients formulated for XLA's CPU backend (module docstring)."""
    stride = pair(stride)
    if w.shape[:2] == (1, 1):
        # a 1x1 convolution is a matmul over channels (D2L 7.4.3); autodiff's gradient is two matmuls
        xs = _pad(x, padding)[:, :: stride[0], :: stride[1], :]
        return (xs.reshape(-1, xs.shape[-1]) @ w[0, 0]).reshape(*xs.shape[:3], w.shape[-1])
    return _conv(x, w, pair(padding), stride)


def conv2d_onednn(x: jax.Array, w: jax.Array, padding: Pair = 0, stride: Pair = 1) -> jax.Array:
    """`conv2d_xla`'s function by oneDNN's kernels (`core/nn/onednn.py`), in float32, where they
    measured faster: `conv2d_cpu` takes a 1x1 kernel (a matmul: 13.7 against 20.3 ms for
    64 -> 128 at 14x14 in a scan), outputs of at most `IM2COL_MAX_POSITIONS` (one matmul of the
    stacked windows: 4.8 against 7.4 ms for 128 -> 128 at 2x2) and other dtypes."""
    out_h, out_w = out_hw(x.shape[1:3], w.shape[:2], padding, stride)
    if x.dtype != jnp.float32 or w.dtype != jnp.float32 or w.shape[:2] == (1, 1) or out_h * out_w <= IM2COL_MAX_POSITIONS:
        return conv2d_cpu(x, w, padding, stride)
    from .onednn import conv2d_f32

    return conv2d_f32(x, w, pair(padding), pair(stride))


CONV_IMPLS = {"xla": conv2d_xla, "cpu": conv2d_cpu, "onednn": conv2d_onednn}


def conv2d(x: jax.Array, w: jax.Array, padding: Pair = 0, stride: Pair = 1, impl: ConvImpl | None = None) -> jax.Array:
    """Cross-correlation of NHWC `x` with HWIO `w`, zero padding on both sides of H and W."""
    return CONV_IMPLS[impl or default_conv_impl()](x, w, padding, stride)


PoolKind = Literal["avg", "max"]


def pool2d(x: jax.Array, kind: PoolKind = "max", window: Pair = 2, stride: Pair | None = None, padding: Pair = 0) -> jax.Array:
    """Average or max pooling of NHWC `x` (D2L 7.5); `stride` defaults to `window`.

    Non-overlapping windows that tile the input are a reshape and a reduction; any other
    geometry uses `lax.reduce_window`. Max pooling pads with -inf; average pooling counts the
    padding as zeros (PyTorch's default `count_include_pad=True`).
    """
    (kh, kw), (sh, sw), (ph, pw) = pair(window), pair(stride or window), pair(padding)
    b, h, w, c = x.shape
    if (sh, sw) == (kh, kw) and not (ph or pw) and h % kh == 0 and w % kw == 0:
        tiles = x.reshape(b, h // kh, kh, w // kw, kw, c)
        return tiles.mean(axis=(2, 4)) if kind == "avg" else tiles.max(axis=(2, 4))
    dims, strides = (1, kh, kw, 1), (1, sh, sw, 1)
    pads = ((0, 0), (ph, ph), (pw, pw), (0, 0))
    if kind == "avg":
        return lax.reduce_window(x, 0.0, lax.add, dims, strides, pads) / (kh * kw)
    return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, pads)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """(batch, H, W, C) -> (batch, C): the mean over all positions (NiN, D2L 8.3)."""
    return jnp.mean(x, axis=(1, 2))
