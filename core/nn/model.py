"""`Model`: a network with its input fixed, as the training step, evaluation and prediction use it.

`init(key) -> (params, model_state)` and `apply(params, model_state, x, *, train, key) ->
(outputs, model_state)`. `model_state` holds what the optimizer does not train (batch-norm
statistics, dropout rates). A model may stand behind an input pipeline (`with_input`), or one
that moves its targets with its inputs (`with_targets`, `Model.prepare`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from . import layers as L


class Model(NamedTuple):
    init: Callable[..., tuple[Any, Any]]
    apply: Callable[..., tuple[Any, Any]]
    in_shape: tuple[int, ...]
    step_on: frozenset[str] = frozenset()
    net: L.Layer | None = None  # the layer `init` and `apply` run (for summaries); None if built otherwise
    translator: Any = None  # an encoder-decoder's functions for decoding (`core.nn.seq2seq.EncoderDecoder`)
    updates: tuple = ()  # a model of several parts: what each update trains (`core.nn.objective`); () for one
    prepare: Callable | None = None  # (x, y, key, train) -> (x, y): a pipeline that moves targets with inputs
    snapshot: Callable | None = None  # (params, model_state) -> what the run shows of it each epoch (a GAN's samples)


def from_layer(net: L.Layer, in_shape: tuple[int, ...], step_on: frozenset[str] = frozenset()) -> Model:
    """A layer with its input shape fixed."""

    def init(key):
        _, params, state = net.init(key, in_shape)
        return params, state

    def apply(params, model_state, x, *, train=False, key=None):
        return net.apply(params, model_state, x, train=train, key=key)

    return Model(init, apply, in_shape, step_on, net)


def pipeline_key(key):
    """The key an input pipeline draws from: folded from the step's, so that a model's dropout
    draws the same with and without the pipeline."""
    return None if key is None else jax.random.fold_in(key, 0x1A6)


def with_input(model: Model, prepare: Callable, in_shape: tuple[int, ...]) -> Model:
    """`model` behind `prepare(x, key, train) -> x` (a resize, augmentation), taking examples of
    `in_shape`. `prepare` draws from its own key, folded from the step's, so a model's dropout
    draws the same with and without it."""

    def apply(params, model_state, x, *, train=False, key=None):
        x = prepare(x, pipeline_key(key), train)
        return model.apply(params, model_state, x, train=train, key=key)

    return Model(model.init, apply, tuple(in_shape), model.step_on)


def with_targets(model: Model, prepare_pair: Callable, in_shape) -> Model:
    """`model` behind `prepare_pair(x, targets, key, train) -> (x, targets)`, a pipeline that
    moves boxes and masks with their images (`core.data.pipeline.Pipeline.apply_pair`). The
    training step and evaluation call it before the model and the loss (`Model.prepare`)."""
    return model._replace(prepare=prepare_pair, in_shape=in_shape)
