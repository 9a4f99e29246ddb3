"""2-D convolution and pooling on NHWC arrays, in the formulation that is fastest per backend.

Two convolutions compute the same function (D2L 6.2-6.4, cross-correlation with zero padding):

- `conv2d_xla`: one `lax.conv_general_dilated`; XLA differentiates it. The right choice on GPUs
  and TPUs, where XLA calls cuDNN or its own tuned kernels.
- `conv2d_cpu`: the same forward, but each part of the gradient written as what XLA's CPU backend
  runs fast, tied together with `jax.custom_vjp`. Measured on a 2-core CPU with jax 0.10.2 for
  the book's LeNet at batch 256 (milliseconds per call, XLA's own version first):

  | part | conv1 (1 -> 6, 28x28) | conv2 (6 -> 16, 14x14) |
  |---|---|---|
  | forward | 8.6 -> 1.4 (25 shifted slices, fused multiply-adds: one input channel) | 3.5 (kept) |
  | filter gradient | 13.5 -> 4.1 (shifted slices stacked 5 at a time, one matmul each) | 8.1 -> 4.1 (all 25 stacked, one einsum) |
  | input gradient | not needed (data) | 5.4 (kept: a convolution of the padded cotangent) |

Pooling with window == stride that divides the input is a reshape and a reduction, whose
gradient is a broadcast, instead of `lax.reduce_window` and its scatter-like transpose.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")
ConvImpl = Literal["xla", "cpu"]


def out_size(size: int, window: int, padding: int = 0, stride: int = 1) -> int:
    """Output length along one axis: (size + 2 padding - window) // stride + 1 (D2L 6.3)."""
    return (size + 2 * padding - window) // stride + 1


def default_conv_impl(backend: str | None = None) -> ConvImpl:
    """`cpu` on the CPU backend, `xla` elsewhere."""
    return "cpu" if (backend or jax.default_backend()) == "cpu" else "xla"


def _pad(x: jax.Array, padding: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0))) if padding else x


def conv2d_xla(x: jax.Array, w: jax.Array, padding: int = 0) -> jax.Array:
    """x: (batch, H, W, C_in), w: (kh, kw, C_in, C_out) -> (batch, H + 2p - kh + 1, ..., C_out)."""
    return lax.conv_general_dilated(x, w, (1, 1), [(padding, padding)] * 2, dimension_numbers=_DIMS)


def _windows(xp: jax.Array, kh: int, kw: int) -> list[list[jax.Array]]:
    """The kh x kw shifted views of a padded input, each of the output's spatial size."""
    h, w = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    return [[xp[:, i : i + h, j : j + w, :] for j in range(kw)] for i in range(kh)]


def _forward(xp: jax.Array, w: jax.Array) -> jax.Array:
    kh, kw, c_in, c_out = w.shape
    if c_in > 1:
        return conv2d_xla(xp, w)
    # One input channel: XLA's convolution leaves the 25-element dot products to a slow generic
    # kernel; 25 fused multiply-adds over shifted views are one vectorised loop.
    out = 0.0
    for i, row in enumerate(_windows(xp, kh, kw)):
        for j, view in enumerate(row):
            out = out + view * w[i, j, 0]
    return out


def _filter_grad(xp: jax.Array, g: jax.Array, kh: int, kw: int) -> jax.Array:
    """dL/dw[i, j, c, o] = sum over batch and positions of xp[b, h+i, w+j, c] * g[b, h, w, o]."""
    c_in, c_out = xp.shape[-1], g.shape[-1]
    views = _windows(xp, kh, kw)
    if c_in > 1:
        stacked = jnp.stack([v for row in views for v in row])  # (kh*kw, B, H, W, C_in)
        return jnp.einsum("kbhwi,bhwo->kio", stacked, g).reshape(kh, kw, c_in, c_out)
    # One input channel: stacking a column of kh views at a time lets XLA feed the matmul
    # without writing the whole (kh*kw, B*H*W) patch matrix.
    g2 = g.reshape(-1, c_out)
    cols = [jnp.stack([views[i][j][..., 0] for i in range(kh)]).reshape(kh, -1) @ g2 for j in range(kw)]
    return jnp.stack(cols, axis=1).reshape(kh, kw, 1, c_out)


def _input_grad(g: jax.Array, w: jax.Array) -> jax.Array:
    """dL/dxp: a full convolution of g with the kernel flipped and its channels swapped."""
    kh, kw = w.shape[:2]
    gp = jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    return conv2d_xla(gp, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))


@jax.custom_vjp
def _conv_valid(xp: jax.Array, w: jax.Array) -> jax.Array:
    return _forward(xp, w)


def _conv_valid_fwd(xp, w):
    return _forward(xp, w), (xp, w)


def _conv_valid_bwd(residuals, g):
    xp, w = residuals
    # The input gradient of a first layer is unused and removed by XLA as dead code.
    return _input_grad(g, w), _filter_grad(xp, g, w.shape[0], w.shape[1])


_conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


def conv2d_cpu(x: jax.Array, w: jax.Array, padding: int = 0) -> jax.Array:
    """`conv2d_xla`'s function with gradients formulated for XLA's CPU backend (module docstring)."""
    return _conv_valid(_pad(x, padding), w)


CONV_IMPLS = {"xla": conv2d_xla, "cpu": conv2d_cpu}


def conv2d(x: jax.Array, w: jax.Array, padding: int = 0, stride: int = 1, impl: ConvImpl | None = None) -> jax.Array:
    """Cross-correlation of NHWC `x` with HWIO `w`, zero padding on both sides of H and W.

    Strided convolutions go to XLA (the CPU formulation covers stride 1, all that LeNet needs).
    """
    if stride != 1:
        return lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_DIMS)
    return CONV_IMPLS[impl or default_conv_impl()](x, w, padding)


PoolKind = Literal["avg", "max"]


def pool2d(x: jax.Array, kind: PoolKind = "max", window: int = 2, stride: int | None = None, padding: int = 0) -> jax.Array:
    """Average or max pooling of NHWC `x` (D2L 6.5); `stride` defaults to `window`.

    Non-overlapping windows that tile the input are a reshape and a reduction; any other
    geometry uses `lax.reduce_window` (average pooling counts the padding as zeros, like
    PyTorch's default `count_include_pad=True`).
    """
    stride = stride or window
    b, h, w, c = x.shape
    if stride == window and not padding and h % window == 0 and w % window == 0:
        tiles = x.reshape(b, h // window, window, w // window, window, c)
        return tiles.mean(axis=(2, 4)) if kind == "avg" else tiles.max(axis=(2, 4))
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    if kind == "avg":
        return lax.reduce_window(x, 0.0, lax.add, dims, strides, pads) / (window * window)
    return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, pads)
