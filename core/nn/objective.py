"""What a model with several parts trains, update by update (D2L 17.1: the discriminator, then the
generator). A model whose `updates` are set is trained by `core.training.parts` instead of the
supervised step; each `Update` names the params subtree it trains and its loss."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

# loss(params of every part, model_state, batch, key) -> (loss, (model_state, metrics))
PartLoss = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]


class Update(NamedTuple):
    part: str  # the params subtree this update trains; the others are held fixed
    loss: PartLoss
