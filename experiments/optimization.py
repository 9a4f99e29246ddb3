"""The toy problems of D2L 11.3-11.8 (1.0: 12.3-12.8): gradient descent, Newton's method, SGD with
noisy gradients and three step-size schedules, momentum, AdaGrad and RMSProp, on the book's 1-D
and 2-D functions from its starting points, with its step sizes.

Each run is an Optax transformation (the from-scratch ones of `core.training.from_scratch`)
applied for the book's number of steps in one `lax.scan`. The final points are written next to
the book's printed ones (summary.json, results.csv), and every trajectory is drawn over its
function's contours (trajectories.png). These are not data sets and models, so they do not go
through the training loop (`core.training.lifecycle`): a run is ten to a thousand updates of a
scalar or a 2-vector, and the lesson is the trajectory of those updates, which a hand `lax.scan`
shows plainly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.report import outputs, plots, progress
from dlrun.core.training import from_scratch

C = 0.15 * math.pi
FUNCTIONS: dict[str, Callable] = {
    "x^2": lambda x: x[0] ** 2,
    "x cos(cx)": lambda x: x[0] * jnp.cos(C * x[0]),
    "cosh(0.5x)": lambda x: jnp.cosh(0.5 * x[0]),
    "x1^2 + 2 x2^2": lambda x: x[0] ** 2 + 2 * x[1] ** 2,
    "0.1 x1^2 + 2 x2^2": lambda x: 0.1 * x[0] ** 2 + 2 * x[1] ** 2,
}


class Toy(NamedTuple):
    section: str
    label: str
    function: str
    x0: tuple[float, ...]
    steps: int
    transform: Callable[[Callable], optax.GradientTransformation]  # f -> the update's direction
    lr: float
    book: tuple[float, ...] | None  # the book's printed final point; None where it is random
    noise: bool = False  # 11.4: N(0, 1) added to every gradient coordinate


def gd(f):
    return optax.identity()


def newton(f):
    """x <- x - lr f'(x) / f''(x) (D2L 11.3.3), for a function of one variable."""
    second = jax.grad(lambda x: jax.grad(f)(x)[0])

    def update(g, state, params):
        return g / second(params)[0], state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scheduled(schedule: Callable):
    """11.4: the step size times `schedule(t)`, t counting updates from 1 as the book's `lr()`."""
    return lambda f: optax.scale_by_schedule(lambda count: schedule(count + 1))


TOYS = [
    Toy("11.3", "GD lr 0.2", "x^2", (10.0,), 10, gd, 0.2, (0.060466,)),
    Toy("11.3", "GD lr 0.05 (too small)", "x^2", (10.0,), 10, gd, 0.05, (3.486784,)),
    Toy("11.3", "GD lr 1.1 (diverges)", "x^2", (10.0,), 10, gd, 1.1, (61.917364,)),
    Toy("11.3", "GD lr 2, nonconvex", "x cos(cx)", (10.0,), 10, gd, 2.0, (-1.528165,)),
    Toy("11.3", "GD lr 0.1", "x1^2 + 2 x2^2", (-5.0, -2.0), 20, gd, 0.1, (-0.057646, -0.000073)),
    Toy("11.3", "Newton lr 1", "cosh(0.5x)", (10.0,), 10, newton, 1.0, (0.0,)),
    Toy("11.3", "Newton lr 1, nonconvex", "x cos(cx)", (10.0,), 10, newton, 1.0, (26.834133,)),
    Toy("11.3", "Newton lr 0.5, nonconvex", "x cos(cx)", (10.0,), 10, newton, 0.5, (7.26986,)),
    Toy("11.4", "SGD constant", "x1^2 + 2 x2^2", (-5.0, -2.0), 50, scheduled(lambda t: 1.0), 0.1, None, True),
    Toy("11.4", "SGD exponential", "x1^2 + 2 x2^2", (-5.0, -2.0), 1000, scheduled(lambda t: jnp.exp(-0.1 * t)), 0.1, None,
        True),
    Toy("11.4", "SGD polynomial", "x1^2 + 2 x2^2", (-5.0, -2.0), 50, scheduled(lambda t: (1 + 0.1 * t) ** -0.5), 0.1, None,
        True),
    Toy("11.6", "GD lr 0.4", "0.1 x1^2 + 2 x2^2", (-5.0, -2.0), 20, gd, 0.4, (-0.943467, -0.000073)),
    Toy("11.6", "GD lr 0.6 (x2 diverges)", "0.1 x1^2 + 2 x2^2", (-5.0, -2.0), 20, gd, 0.6, (-0.387814, -1673.365109)),
    Toy("11.6", "momentum lr 0.6, beta 0.5", "0.1 x1^2 + 2 x2^2", (-5.0, -2.0), 20, lambda f: from_scratch.momentum(0.5),
        0.6, (0.007188, 0.002553)),
    Toy("11.6", "momentum lr 0.6, beta 0.25", "0.1 x1^2 + 2 x2^2", (-5.0, -2.0), 20, lambda f: from_scratch.momentum(0.25),
        0.6, (-0.126340, -0.186632)),
    Toy("11.7", "AdaGrad lr 0.4", "0.1 x1^2 + 2 x2^2", (-5.0, -2.0), 20, lambda f: from_scratch.adagrad(1e-6), 0.4,
        (-2.382563, -0.158591)),
    Toy("11.7", "AdaGrad lr 2", "0.1 x1^2 + 2 x2^2", (-5.0, -2.0), 20, lambda f: from_scratch.adagrad(1e-6), 2.0,
        (-0.002295, 0.0)),
    Toy("11.8", "RMSProp lr 0.4, gamma 0.9", "0.1 x1^2 + 2 x2^2", (-5.0, -2.0), 20,
        lambda f: from_scratch.rmsprop(0.9, 1e-6), 0.4, (-0.010599, 0.0)),
]


class OptimizationToysOptions(Section):
    name: str = "optimization_toys"
    repeats: int = Field(20, gt=0, description="11.4: noisy runs per schedule for the mean distance to the optimum")


def trajectories(toy: Toy, keys: jax.Array) -> np.ndarray:
    """The points x_0, ..., x_steps of `toy`, one trajectory per key (its gradient noise), shape
    (len(keys), steps + 1, dim); all of them in one compiled program."""
    f = FUNCTIONS[toy.function]
    grad = jax.grad(f)
    opt = optax.chain(toy.transform(f), optax.scale(-toy.lr))
    x0 = jnp.asarray(toy.x0, jnp.float32)

    def one(key):
        def body(carry, t):
            x, state = carry
            g = grad(x)
            if toy.noise:
                g = g + jax.random.normal(jax.random.fold_in(key, t), x.shape)
            updates, state = opt.update(g, state, x)
            x = optax.apply_updates(x, updates)
            return (x, state), x

        _, xs = jax.lax.scan(body, (x0, opt.init(x0)), jnp.arange(toy.steps))
        return jnp.concatenate([x0[None], xs])

    return np.asarray(jax.jit(jax.vmap(one))(keys))


def difference(final: np.ndarray, book: tuple[float, ...]) -> float:
    """The largest difference from the book's printed point, relative to values above 1 (the
    divergent runs reach 1673 in float32)."""
    book = np.asarray(book)
    return float(np.max(np.abs(final - book) / np.maximum(1.0, np.abs(book))))


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Every toy run; results.csv (one row per run, ours next to the book's), summary.json and
    trajectories.png."""
    opts = validate_options(OptimizationToysOptions, cfg, source)
    notes = progress.notes(cfg.trainer.progress)
    key = jax.random.PRNGKey(cfg.seed)
    rows, paths = [], {}
    for i, toy in enumerate(TOYS):
        repeats = opts.repeats if toy.noise else 0
        runs = trajectories(toy, jnp.stack([jax.random.fold_in(key, 1000 * r + i) for r in range(repeats + 1)]))
        paths[toy.label] = runs[0]
        final = runs[0, -1]
        row = {"section": toy.section, "run": toy.label, "function": toy.function, "lr": toy.lr, "steps": toy.steps,
               "final": [round(float(v), 6) for v in final]}
        if toy.book is not None:
            row["book"] = list(toy.book)
            row["difference"] = difference(final, toy.book)
        else:  # the book's point is where each schedule leaves SGD on average, not one random end
            row["mean_distance_to_optimum"] = float(np.mean(np.linalg.norm(runs[1:, -1], axis=-1)))
        rows.append(row)
        shown = ", ".join(f"{v:.6f}" for v in final)
        book = f"  book ({', '.join(f'{v:.6f}' for v in toy.book)})" if toy.book else ""
        notes.note(f"{toy.section} {toy.label:28s} ({shown}){book}")
    outputs.write_metrics(run_dir / "results.csv", [{**r, "final": " ".join(map(str, r["final"])),
                                                     "book": " ".join(map(str, r.get("book", [])))} for r in rows])
    summary = {"runs": rows, "max_difference": max(r.get("difference", 0.0) for r in rows),
               "seed": cfg.seed, "repeats": opts.repeats}
    disk.write_json(run_dir / "summary.json", summary)
    _plot(run_dir / "trajectories.png", paths)
    return summary


def _plot(path: Path, paths: dict[str, np.ndarray]) -> None:
    """One panel per function and section: 1-D runs over the curve, 2-D runs over contours."""
    from matplotlib.figure import Figure

    panels: dict[tuple[str, str], list[Toy]] = {}
    for toy in TOYS:
        panels.setdefault((toy.section, toy.function), []).append(toy)
    cols = 4
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, ((section, name), toys) in zip(axes, panels.items()):
        f = FUNCTIONS[name]
        if len(toys[0].x0) == 1:
            xs = np.concatenate([paths[t.label][:, 0] for t in toys])
            lo, hi = min(xs.min(), -10) - 1, max(xs.max(), 10) + 1
            lo, hi = max(lo, -70), min(hi, 70)
            grid = np.linspace(lo, hi, 400)
            ax.plot(grid, np.asarray(f(jnp.asarray(grid)[None])), color="0.6")
            for t in toys:
                p = paths[t.label][:, 0]
                ax.plot(p, np.asarray(f(jnp.asarray(p)[None])), "-o", markersize=3, label=t.label)
        else:
            g1, g2 = np.meshgrid(np.linspace(-5.5, 1.5, 200), np.linspace(-3.0, 3.0, 200))
            ax.contour(g1, g2, np.asarray(f(jnp.stack([jnp.asarray(g1), jnp.asarray(g2)]))), 15, colors="0.7",
                       linewidths=0.6)
            for t in toys:
                p = paths[t.label]
                ax.plot(p[:, 0], p[:, 1], "-o", markersize=2, linewidth=1, label=t.label)
            ax.set(xlim=(-5.5, 1.5), ylim=(-3.0, 3.0), xlabel="x1", ylabel="x2")
        ax.set_title(f"D2L {section}: f = {name}", fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.2)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    plots.write_figure(path, fig)
