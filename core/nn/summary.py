"""A model's layers as a table, without training: path, output shape, parameter count and
FLOPs per layer, like the book's `layer_summary` (D2L 8.1) and Keras's `model.summary()`.

The walk follows the combinators' own shape pass (`Layer.forward` in shape mode), so the rows
are exactly the layers `apply` runs, in order. FLOPs come from XLA's cost analysis of each
layer's evaluation-mode forward pass on one example, compiled alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from .layers import Layer


class Row(NamedTuple):
    path: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    flops: float


def _size(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def example_struct(in_shape) -> Any:
    """One example as an abstract array: floats, or for named inputs token ids (int32) each."""
    if isinstance(in_shape, dict):
        return {k: jax.ShapeDtypeStruct((1, *s), jax.numpy.int32) for k, s in in_shape.items()}
    return jax.ShapeDtypeStruct((1, *in_shape), jax.numpy.float32)


def forward_flops(layer: Layer, in_shape: tuple[int, ...], params, state) -> float:
    """XLA's count of floating-point operations of `layer`'s forward pass on one example."""
    x = example_struct(in_shape)
    lowered = jax.jit(lambda p, s, x: layer.apply(p, s, x, train=False)[0]).lower(params, state, x)
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0))


def _shape(shape):
    return dict(shape) if isinstance(shape, dict) else tuple(shape)


def summarize(layer: Layer, in_shape: tuple[int, ...], max_depth: int | None = None) -> list[Row]:
    """One row per leaf layer (or per composite at `max_depth`, its children summed into it).

    Args:
        layer: the network.
        in_shape: one example's shape, without the batch axis.
        max_depth: 1 lists the top-level layers; None expands every combinator.
    """
    rows: list[Row] = []
    key = jax.random.PRNGKey(0)

    def walk(layer: Layer, shape, path: str, depth: int):
        if layer.children is None or (max_depth is not None and depth >= max_depth):
            out_shape = []

            def init():  # shapes only: AlexNet's 47M parameters are never allocated
                out, params, state = layer.init(key, _shape(shape))
                out_shape.extend(out)
                return params, state

            params, state = jax.eval_shape(init)
            flops = forward_flops(layer, _shape(shape), params, state)
            rows.append(Row(path or layer.kind, layer.kind, tuple(out_shape), _size(params), flops))
            return tuple(out_shape)

        def run(name, child_shape):
            return walk(dict(layer.children)[name], child_shape, f"{path}/{name}" if path else name, depth + 1)

        return layer.forward(run, _shape(shape), shape_mode=True)

    walk(layer, _shape(in_shape), "", 0)
    return rows


def parameter_rows(model) -> list[Row]:
    """A model that is not one layer (a recommender, skip-gram: `Model.net` is None): a row per
    parameter array (its path, its shape in the output-shape column), then one for the whole
    forward pass on one example (its output's shape, or () for several outputs, and FLOPs)."""
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    rows = [Row("/".join(str(getattr(k, "key", k)) for k in path), "params", tuple(leaf.shape), int(np.prod(leaf.shape)), 0.0)
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)]
    x = example_struct(model.in_shape)
    forward = jax.jit(lambda p, s, x: model.apply(p, s, x, train=False)[0])
    out = jax.eval_shape(forward, params, state, x)
    cost = forward.lower(params, state, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out_shape = tuple(out.shape[1:]) if hasattr(out, "shape") else ()
    return rows + [Row("forward", "model", out_shape, 0, float((cost or {}).get("flops", 0.0)))]
