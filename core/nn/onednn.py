"""The CPU convolution by oneDNN, the library PyTorch's CPU convolutions run on (`conv_impl: onednn`).

`onednn_conv.cc` wraps oneDNN's forward, input-gradient and filter-gradient convolutions as XLA
FFI handlers; this module compiles it once per machine (a C++ compiler, oneDNN's headers and
library, and jaxlib's FFI headers), registers the handlers with XLA's CPU backend and ties the
three together with `jax.custom_vjp`. They are ordinary operations of the jitted program, inside
a `lax.scan` as well.

oneDNN comes from PyPI: `pip install 'dlrun[onednn]'` installs Intel's CPU build (oneDNN 3.2,
GNU OpenMP; about 39 MB to download and 160 MB installed, Linux x86_64 only). Where it, or a
compiler, is missing, `available()` says why and `conv_impl: auto` keeps the XLA formulation of
`core/nn/conv.py`; `$DLRUN_ONEDNN_ROOT` points at another oneDNN installation (`include/` and
`lib/`). The compiled library is kept in `$DLRUN_KERNEL_CACHE` (default: the user cache's
`kernels/`), named by a digest of the source, the compiler's flags, oneDNN's and jaxlib's
versions, so an upgrade of any of them compiles it afresh.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from .. import disk
from ..data.files import cache_dir

SOURCE = Path(__file__).with_name("onednn_conv.cc")
HANDLERS = {"forward": "DlrunConvForward", "input_grad": "DlrunConvBackwardData", "filter_grad": "DlrunConvBackwardWeights"}
INSTALL_HINT = "pip install 'dlrun[onednn]' (Linux x86_64), or set DLRUN_ONEDNN_ROOT to a oneDNN with include/ and lib/"


class OneDNNUnavailable(RuntimeError):
    """oneDNN's convolution cannot be used here; the message says why."""


def onednn_root() -> Path | None:
    """The oneDNN installation: $DLRUN_ONEDNN_ROOT, else the environment's prefix (where pip puts it)."""
    for root in (os.environ.get("DLRUN_ONEDNN_ROOT"), sys.prefix):
        if root and (Path(root) / "include/oneapi/dnnl/dnnl.hpp").is_file() and list(Path(root).glob("lib/libdnnl.so*")):
            return Path(root)
    return None


def kernel_dir() -> Path:
    return Path(os.environ.get("DLRUN_KERNEL_CACHE") or cache_dir() / "kernels")


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _command(compiler: str, root: Path, out: Path) -> list[str]:
    lib = root / "lib"
    return [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}", f"-I{root / 'include'}",
            str(SOURCE), "-o", str(out), f"-L{lib}", "-ldnnl", f"-Wl,-rpath,{lib}"]


def _version_text(root: Path) -> str:
    header = root / "include/oneapi/dnnl/dnnl_version.h"
    return header.read_text() if header.is_file() else ""


def build() -> Path:
    """The compiled library's path, compiling it first if this machine has none for these versions.

    Raises:
        OneDNNUnavailable: not on Linux x86_64, oneDNN or a C++ compiler missing, or the compiler failed.
    """
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise OneDNNUnavailable(f"oneDNN's PyPI build is for Linux x86_64, not {sys.platform} {platform.machine()}")
    root, compiler = onednn_root(), _compiler()
    if root is None:
        raise OneDNNUnavailable(f"oneDNN is not installed: {INSTALL_HINT}")
    if compiler is None:
        raise OneDNNUnavailable("no C++ compiler (c++, g++ or $CXX) to build the oneDNN convolution")
    digest = hashlib.sha1()
    for part in (SOURCE.read_bytes(), " ".join(_command(compiler, root, Path("out"))).encode(),
                 _version_text(root).encode(), jaxlib.__version__.encode()):
        digest.update(part)
    out = kernel_dir() / f"dlrun_onednn_{digest.hexdigest()[:16]}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".build.lock", "w") as lock:  # processes starting together compile it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        print(f"dlrun: compiling oneDNN's convolution wrapper into {out.parent} (once per machine)", file=sys.stderr)
        with disk.temporary_beside(out, ".so") as tmp:
            done = subprocess.run(_command(compiler, root, tmp), capture_output=True, text=True)
            if done.returncode != 0:
                raise OneDNNUnavailable(f"compiling {SOURCE.name} failed:\n{done.stderr[-2000:]}")
            disk.publish(tmp, out)
    return out


@functools.cache
def _library() -> ctypes.CDLL | str:
    """The loaded library with its handlers registered with XLA, or why it cannot be had."""
    try:
        lib = ctypes.CDLL(str(build()))
    except (OneDNNUnavailable, OSError) as e:
        return str(e)
    for name in HANDLERS.values():
        jax.ffi.register_ffi_target(f"dlrun_{name}", jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    lib.dlrun_conv_impl.restype = ctypes.c_char_p
    lib.dlrun_conv_impl.argtypes = [ctypes.c_int64] * 14
    return lib


def available() -> tuple[bool, str]:
    """(True, "") when the convolution can run here, else (False, the reason)."""
    lib = _library()
    return (True, "") if isinstance(lib, ctypes.CDLL) else (False, lib)


def require() -> None:
    """Raises OneDNNUnavailable with the reason when `available()` is false."""
    ok, why = available()
    if not ok:
        raise OneDNNUnavailable(f"conv_impl 'onednn' cannot run here: {why}")


def _geometry(x_shape, w_shape, padding, stride):
    (b, h, wd, _), (kh, kw, _, o) = x_shape, w_shape
    return b, (h + 2 * padding[0] - kh) // stride[0] + 1, (wd + 2 * padding[1] - kw) // stride[1] + 1, o


def _call(handler: str, shape: tuple[int, ...], padding, stride, *args: jax.Array) -> jax.Array:
    attrs = {"sh": np.int64(stride[0]), "sw": np.int64(stride[1]), "ph": np.int64(padding[0]), "pw": np.int64(padding[1])}
    # under `jax.vmap` (a sweep's vectorised trials) one call per trial, in a loop
    return jax.ffi.ffi_call(f"dlrun_{HANDLERS[handler]}", jax.ShapeDtypeStruct(shape, jnp.float32),
                            vmap_method="sequential")(*args, **attrs)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, padding: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    return _call("forward", _geometry(x.shape, w.shape, padding, stride), padding, stride, x, w)


def _conv_fwd(x, w, padding, stride):
    return _conv(x, w, padding, stride), (x, w)


def _conv_bwd(padding, stride, residuals, g):
    x, w = residuals
    return (_call("input_grad", x.shape, padding, stride, g, w), _call("filter_grad", w.shape, padding, stride, x, g))


_conv.defvjp(_conv_fwd, _conv_bwd)


def _crop_unread(x: jax.Array, w_hw: tuple[int, int], padding: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    """Drop the trailing rows and columns no window reaches (a stride that does not divide the
    input), which oneDNN would otherwise see as a negative padding."""
    keep = []
    for size, k, p, s in zip(x.shape[1:3], w_hw, padding, stride):
        out = (size + 2 * p - k) // s + 1
        keep.append(min(size, (out - 1) * s + k - p))
    return x[:, : keep[0], : keep[1], :] if tuple(keep) != x.shape[1:3] else x


def conv2d_f32(x: jax.Array, w: jax.Array, padding: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    """`core.nn.conv.conv2d_xla`'s function for float32 NHWC `x` and HWIO `w` by oneDNN
    (`core.nn.conv.conv2d_onednn` takes the other dtypes elsewhere).

    Raises:
        OneDNNUnavailable: oneDNN's convolution cannot be built or loaded here.
    """
    require()
    return _conv(_crop_unread(x, w.shape[:2], padding, stride), w, padding, stride)


def chosen_kernels(x_shape, w_shape, padding: tuple[int, int] = (0, 0), stride: tuple[int, int] = (1, 1)) -> dict[str, str]:
    """The oneDNN implementation of each of the three calls for one geometry, e.g. 'brgconv:avx2'."""
    require()
    b, oh, ow, o = _geometry(x_shape, w_shape, padding, stride)
    (_, h, wd, c), (kh, kw) = x_shape, w_shape[:2]
    lib = _library()
    return {name: lib.dlrun_conv_impl(kind, b, h, wd, c, kh, kw, o, oh, ow, *stride, *padding).decode()
            for kind, name in enumerate(HANDLERS)}
