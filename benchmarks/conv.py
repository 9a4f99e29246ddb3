"""Convolution formulations side by side: XLA's own gradient against `core/nn/conv.py`'s CPU one.

For each shape (the chapter-8 models' convolutions at CPU sizes), forward plus both gradients at
batch 128, timed per call as a jitted step and inside a 4-iteration `lax.scan` (a whole epoch is
one scan). Both formulations run in the same process, one after the other, per shape.

    python benchmarks/conv.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from dlrun.core.nn.conv import conv2d_cpu, conv2d_xla

# (side, in channels, out channels, kernel, padding, stride)
SHAPES = [(28, 16, 16, 3, 1, 1), (14, 32, 32, 3, 1, 1), (7, 64, 64, 3, 1, 1), (14, 16, 32, 3, 1, 2),
          (28, 16, 32, 1, 0, 1), (14, 64, 128, 1, 0, 1), (28, 1, 6, 5, 2, 1)]


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


def main() -> None:
    print(f"{'shape':<34} {'XLA step':>9} {'XLA scan':>9} {'cpu step':>9} {'cpu scan':>9}  (ms per call)")
    for side, c_in, c_out, k, p, s in SHAPES:
        x = jax.random.normal(jax.random.PRNGKey(0), (128, side, side, c_in))
        w = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (k, k, c_in, c_out))
        xla, cpu = timings(conv2d_xla, x, w, p, s), timings(conv2d_cpu, x, w, p, s)
        name = f"{k}x{k} p{p} s{s}, {c_in}->{c_out}, {side}x{side}"
        print(f"{name:<34} {xla[0]:>9.1f} {xla[1]:>9.1f} {cpu[0]:>9.1f} {cpu[1]:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
