"""Convolution formulations side by side: XLA's own gradient, `core/nn/conv.py`'s CPU one, and
oneDNN's kernels (`core/nn/onednn.py`, where it is installed).

Per shape (the chapter 6-8 models' convolutions at CPU sizes): forward plus both gradients at
batch 128, timed per call as a jitted step and inside a 4-iteration `lax.scan` (a whole epoch is
one scan), all formulations in the same process, one after the other. With `--whole`, each
model's whole training epoch (`benchmarks/speed.py`'s dlrun worker, `trainer.loop: scan`) with
each `model.conv_impl`, in processes taking turns, round after round.

    python benchmarks/conv.py
    python benchmarks/conv.py --whole lenet,resnet_cpu --num-train 10240 --epochs 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from dlrun.core.nn.conv import CONV_IMPLS

# (side, in channels, out channels, kernel, padding, stride)
SHAPES = [(28, 16, 16, 3, 1, 1), (14, 32, 32, 3, 1, 1), (7, 64, 64, 3, 1, 1), (14, 16, 32, 3, 1, 2),
          (28, 16, 32, 1, 0, 1), (14, 64, 128, 1, 0, 1), (28, 1, 6, 5, 2, 1), (14, 6, 16, 5, 0, 1)]


def impls() -> list[str]:
    from dlrun.core.nn.onednn import available

    return ["xla", "cpu"] + (["onednn"] if available()[0] else [])


def per_call_ms(fn, *args, calls: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls * 1e3


def timings(conv, x, w, padding, stride) -> tuple[float, float]:
    loss = lambda x, w: jnp.sum(conv(x, w, padding, stride) ** 2)  # noqa: E731
    step = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def scanned(x, w):
        def body(w, _):
            gx, gw = jax.grad(loss, argnums=(0, 1))(x, w)
            return w - 1e-6 * gw + 1e-9 * jnp.sum(gx), None  # both gradients are used

        return jax.lax.scan(body, w, None, length=4)[0]

    return per_call_ms(step, x, w), per_call_ms(jax.jit(scanned), x, w) / 4


def per_shape() -> None:
    names = impls()
    print(f"{'shape':<34} " + " ".join(f"{n + ' ' + k:>12}" for n in names for k in ("step", "scan")) + "  (ms per call)")
    for side, c_in, c_out, k, p, s in SHAPES:
        x = jax.random.normal(jax.random.PRNGKey(0), (128, side, side, c_in))
        w = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (k, k, c_in, c_out))
        row = [t for n in names for t in timings(CONV_IMPLS[n], x, w, p, s)]
        name = f"{k}x{k} p{p} s{s}, {c_in}->{c_out}, {side}x{side}"
        print(f"{name:<34} " + " ".join(f"{t:>12.1f}" for t in row), flush=True)


def whole(models: list[str], args) -> None:
    """Seconds per training epoch of each model with each convolution, processes taking turns."""
    speed = Path(__file__).with_name("speed.py")
    common = ["--epochs", str(args.epochs)] + (["--num-train", str(args.num_train)] if args.num_train else [])
    names = [n for n in impls() if n != "xla"]
    seconds: dict = {(m, n): [] for m in models for n in names}
    for r in range(args.rounds):
        for m in models:
            for n in names:
                proc = subprocess.run([sys.executable, str(speed), "--worker", "train", "--model", m, "--impl", "scan",
                                       f"--set=model.conv_impl={n}", *common], capture_output=True, text=True, cwd=speed.parent)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"{m} with conv_impl {n} failed:\n{proc.stderr[-3000:]}")
                epoch = statistics.median(json.loads(lines[-1][7:])["epoch_seconds"])
                seconds[(m, n)].append(epoch)
                print(f"round {r + 1}: {m:10s} {n:7s} {epoch:.3f} s/epoch", flush=True)
    print("\n| model | " + " | ".join(f"conv_impl {n}" for n in names) + " | speed-up of the last |")
    print("|---|" + "---|" * (len(names) + 1))
    for m in models:
        med = [statistics.median(seconds[(m, n)]) for n in names]
        print(f"| {m} | " + " | ".join(f"{t:.3f} s" for t in med) + f" | {med[0] / med[-1]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--whole", default="", help="comma-separated models of benchmarks/speed.py: whole epochs instead")
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    models = [m for m in args.whole.split(",") if m]
    whole(models, args) if models else per_shape()


if __name__ == "__main__":
    main()
