"""Layers made of layers: in sequence, side by side, with a skip connection, over time.

Each combinator is itself a `Layer` (`core.nn.layers`): it threads params, state and PRNG keys
through its children, so a model of any depth is one `init` and one `apply`. Children are
named by kind and position among their kind (`conv0`, `conv1`, `bn0`); a child's params and
state sit under its name when it has any, so paths read `conv1/w`, `bn0/mean`,
`residual0/body/conv0/w`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from .layers import Layer


def child_names(layers: Sequence[Layer]) -> list[str]:
    """`conv`, `bn`, `conv` -> `conv0`, `bn0`, `conv1`."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        names.append(f"{layer.kind}{counts.get(layer.kind, 0)}")
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
    return names


def _split(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return list(jax.random.split(key, n)) if key is not None else [None] * n


def composite(kind: str, children: dict[str, Layer], forward: Callable) -> Layer:
    """A layer whose children are `children` (by name); `forward(run, x)` computes the output,
    calling `run(name, x)` to apply a child. Keys are split in the children's order, for init
    and apply alike."""
    names = list(children)

    def init(key, in_shape):
        params, state, shapes = {}, {}, {}
        keys = dict(zip(names, _split(key, len(names))))

        def run(name, shape):
            shapes[name], p, s = children[name].init(keys[name], shape)
            if p:
                params[name] = p
            if s:
                state[name] = s
            return shapes[name]

        return forward(run, in_shape, shape_mode=True), params, state

    def apply(params, state, x, *, train=False, key=None):
        new_state = {}
        keys = dict(zip(names, _split(key, len(names))))

        def run(name, value):
            y, s = children[name].apply(params.get(name, {}), state.get(name, {}), value, train=train, key=keys[name])
            if s:
                new_state[name] = s
            return y

        return forward(run, x, shape_mode=False), new_state

    return Layer(kind, init, apply, tuple(children.items()), forward)


def serial(*layers: Layer, kind: str = "serial") -> Layer:
    """Apply layers left to right."""
    children = dict(zip(child_names(layers), layers))

    def forward(run, x, shape_mode):
        for name in children:
            x = run(name, x)
        return x

    return composite(kind, children, forward)


def parallel(*branches: Layer, kind: str = "parallel") -> Layer:
    """Apply each branch to the same input and concatenate the outputs on the last (channel)
    axis, as an Inception block does (D2L 7.4). Branches are named `branch0`, `branch1`, ..."""
    children = {f"branch{i}": b for i, b in enumerate(branches)}

    def forward(run, x, shape_mode):
        outs = [run(name, x) for name in children]
        if shape_mode:
            if len({tuple(o[:-1]) for o in outs}) != 1:
                raise ValueError(f"parallel branches disagree on all but the channel axis: {outs}")
            return (*outs[0][:-1], sum(o[-1] for o in outs))
        return jnp.concatenate(outs, axis=-1)

    return composite(kind, children, forward)


def residual(body: Layer, projection: Layer | None = None, kind: str = "residual") -> Layer:
    """y = body(x) + x, or body(x) + projection(x) when the shapes differ (a 1x1 convolution in
    ResNet, D2L 7.6). Children: `body`, `proj`."""
    children = {"body": body} | ({"proj": projection} if projection is not None else {})

    def forward(run, x, shape_mode):
        y = run("body", x)
        skip = run("proj", x) if projection is not None else x
        if shape_mode and tuple(y) != tuple(skip):
            raise ValueError(f"residual: the body gives {tuple(y)} but the skip connection {tuple(skip)}; add a projection")
        return y if shape_mode else y + skip

    return composite(kind, children, forward)


class Cell(NamedTuple):
    """One step of a recurrent network (`core.nn.rnn` has the book's cells).

    `init(key, in_features) -> (out_features, params)`; `initial(batch) -> carry` (the hidden
    state before the first step); `step(params, carry, x_t) -> (carry, y_t)`, x_t (batch, F).
    `project(params, x) -> x'`, when given, runs once on the whole (batch, steps, F) input before
    the scan, and `step` receives its rows: the input's matrix products for all steps at once.
    """

    kind: str
    init: Callable[[jax.Array, int], tuple[int, Any]]
    initial: Callable[[int], Any]
    step: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]
    project: Callable[[Any, jax.Array], jax.Array] | None = None


CARRY = "carry"  # the model-state key of a hidden state carried from batch to batch


def recurrent(cell: Cell, reverse: bool = False, carry_batch: int | None = None) -> Layer:
    """Run a cell over the time axis with `lax.scan`: (batch, T, F) -> (batch, T, H), the
    cell's output at every step. `reverse` runs from the last step to the first (the backward
    half of a bidirectional RNN, D2L 10.4).

    The hidden state starts at zero, unless `carry_batch` is set: then training batches of that
    size start from the state the previous batch ended with (kept in the model state under
    `carry`, with its gradient stopped: D2L 9.5's detach), as sequential partitioning needs.
    The train step zeroes it at each epoch's start (`reset_carries`); evaluation starts at zero.
    """
    if carry_batch is not None and reverse:
        raise ValueError("a backward recurrence cannot carry its state into the next batch")

    def init(key, in_shape):
        steps, features = in_shape
        out_features, params = cell.init(key, features)
        return (steps, out_features), params, ({CARRY: cell.initial(carry_batch)} if carry_batch else {})

    def apply(params, state, x, *, train=False, key=None):
        carried = carry_batch is not None and train and x.shape[0] == carry_batch
        h0 = jax.lax.stop_gradient(state[CARRY]) if carried else cell.initial(x.shape[0])
        ys, h = scan_cell(cell, params, x, h0, reverse)
        return ys, ({CARRY: h} if carried else state)

    return Layer(cell.kind, init, apply)


def scan_cell(cell: Cell, params: Any, x: jax.Array, h0: Any, reverse: bool = False) -> tuple[jax.Array, Any]:
    """The cell over the time axis of x (batch, T, F) from the state h0: (outputs (batch, T, H),
    the state after the last step). The state keeps x's dtype."""
    h0 = jax.tree_util.tree_map(lambda h: h.astype(x.dtype), h0)
    inputs = cell.project(params, x) if cell.project else x
    h, ys = jax.lax.scan(lambda h, x_t: cell.step(params, h, x_t), h0, jnp.swapaxes(inputs, 0, 1), reverse=reverse)
    return jnp.swapaxes(ys, 0, 1), h


def reset_carries(model_state: Any, reset: jax.Array) -> Any:
    """Zero every carried hidden state (`recurrent`'s `carry`) where `reset` is true."""

    def zero(path, leaf):
        carried = any(getattr(k, "key", None) == CARRY for k in path)
        return jnp.where(reset, jnp.zeros_like(leaf), leaf) if carried else leaf

    return jax.tree_util.tree_map_with_path(zero, model_state)
