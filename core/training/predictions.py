"""What a model of image targets shows after training: a detector's boxes (D2L 13.7.3) and a
segmenter's masks (D2L 13.11.5) on the first validation images, as data for a picture.

Training never draws (`core.report.figures`): these functions return arrays, and
`Pictures.predictions` carries them to the figures hook, which draws `detections.png` or
`masks.png` in the run directory.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import numpy as np

from ..data import Dataset
from .state import TrainState

DETECTION_THRESHOLD = 0.9  # the book's display threshold on a detection's score (D2L 13.7.3)


class Predictions(NamedTuple):
    """`kind` is "detections" or "masks"; `arrays` what its picture draws."""

    kind: str
    arrays: dict[str, Any]


@partial(jax.jit, static_argnums=(0, 1))
def _prepared_outputs(apply, prepare, params, model_state, x, y):
    """The model's outputs on examples as evaluation sees them (resized, targets alike)."""
    if prepare is not None:
        x, y = prepare(x, y, None, False)
    out, _ = apply(params, model_state, x, train=False)
    return x, y, out


def image_predictions(setup, state: TrainState, data: Dataset, count: int = 8) -> Predictions | None:
    """A detector's detections or a segmenter's predicted masks on the first `count` validation
    images, beside their targets; None for a model of other outputs."""
    y_val = data.y_val
    if not isinstance(y_val, dict) or not ({"boxes", "mask"} & set(y_val)) or isinstance(data.x_val, dict):
        return None
    n = min(count, len(data.x_val))
    x = np.asarray(data.x_val[:n])
    y = {k: np.asarray(v[:n]) for k, v in y_val.items()}
    model = setup.model
    images, targets, out = _prepared_outputs(model.apply, model.prepare, state.params, state.model_state, x, y)
    images = np.asarray(images)
    if "boxes" in targets:
        from ..nn.ssd import detect

        return Predictions("detections", {"images": images, "detections": np.asarray(detect(out)),
                                          "boxes": np.asarray(targets["boxes"]), "classes": np.asarray(targets["classes"]),
                                          "threshold": DETECTION_THRESHOLD})
    return Predictions("masks", {"images": images, "true": np.asarray(targets["mask"]),
                                 "predicted": np.asarray(out).argmax(-1), "colormap": data.meta.get("colormap")})
