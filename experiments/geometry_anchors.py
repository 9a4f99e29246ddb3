"""Bounding boxes, anchor boxes and multiscale anchors, exact (D2L 13.3, 13.4, 13.5): the book's
examples run through `core.nn.boxes`, compared with what the book prints, and drawn.

Each `run` writes summary.json (`max_difference` over its named checks, our values and the
book's; see `geometry_book`) and PNG pictures. The book draws on its catdog.jpg, which is not
shipped here: the pictures use matplotlib's grace_hopper.jpg resized to the book's 728 x 561
(or `experiment.image`); the numbers do not depend on the picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.nn import boxes as B

from .geometry_book import BOOK_IMAGE_SIZE, difference, draw, photo, summarise

WIDTH, HEIGHT = BOOK_IMAGE_SIZE
PIXEL_SCALE = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float32)  # fractions -> pixels
RATIOS = (1, 2, 0.5)
# the book's examples (D2L 13.3.1, 13.4.1, 13.4.3, 13.4.4, 13.5.1) and what it prints of them
# (`torch.set_printoptions(2)`); entries marked "derived" are not printed but follow from the
# book's definitions by hand arithmetic
BOOK: dict[str, dict[str, Any]] = {
    "13.3": {
        "dog_bbox": [60, 45, 378, 516], "cat_bbox": [400, 112, 655, 493],
        "round_trip_equal": True,  # printed: box_center_to_corner(box_corner_to_center(boxes)) == boxes
        "centers": [[219.0, 280.5, 318.0, 471.0], [527.5, 302.5, 255.0, 381.0]],  # derived: ((x1+x2)/2, (y1+y2)/2, x2-x1, y2-y1)
    },
    "13.4": {
        "sizes": [0.75, 0.5, 0.25], "ratios": [1, 2, 0.5],
        "anchor_count": 2042040,  # printed: Y.shape == (1, 2042040, 4)
        "anchor_250_250": [0.06, 0.07, 0.63, 0.82],  # printed: boxes[250, 250, 0, :]
        "ground_truth": [[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]],
        "anchors": [[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                    [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]],
        "labels": [[0, 1, 2, 0, 2]],  # printed: labels[2]
        "mask": [[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]],  # printed: labels[1]
        "offsets": [[-0.00e+00, -0.00e+00, -0.00e+00, -0.00e+00, 1.40e+00, 1.00e+01, 2.59e+00, 7.18e+00,
                     -1.20e+00, 2.69e-01, 1.68e+00, -1.57e+00, -0.00e+00, -0.00e+00, -0.00e+00, -0.00e+00,
                     -5.71e-01, -1.00e+00, 4.17e-06, 6.26e-01]],  # printed: labels[0]
        "nms_anchors": [[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95], [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]],
        "nms_cls_probs": [[0, 0, 0, 0], [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]],
        "nms_output": [[0.00, 0.90, 0.10, 0.08, 0.52, 0.92], [1.00, 0.90, 0.55, 0.20, 0.90, 0.88],
                       [-1.00, 0.80, 0.08, 0.20, 0.56, 0.95], [-1.00, 0.70, 0.15, 0.30, 0.62, 0.91]],  # printed
    },
    "13.5": {  # derived: display_anchors(fmap_w, fmap_h, s) with ratios [1, 2, 0.5]; the book shows pictures only
        "maps": {"4x4": {"size": 0.15, "count": 48, "centers": [0.125, 0.375, 0.625, 0.875]},
                 "2x2": {"size": 0.4, "count": 12, "centers": [0.25, 0.75]},
                 "1x1": {"size": 0.8, "count": 3, "centers": [0.5]}},
    },
}


class GeometryImageOptions(Section):
    """The keys beside `experiment.name: bounding_boxes | anchor_boxes | multiscale_anchors`."""

    image: str | None = Field(None, description="a photo to draw the boxes on (default: matplotlib's grace_hopper.jpg, "
                              "standing in for the book's catdog.jpg), resized to the book's 728 x 561")


def run_bounding_boxes(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """D2L 13.3: the dog and cat boxes, their centre form and the round trip; bounding_boxes.png."""
    opts, book = validate_options(GeometryImageOptions, cfg, source), BOOK["13.3"]
    corners = jnp.asarray([book["dog_bbox"], book["cat_bbox"]], jnp.float32)
    centers = B.box_corner_to_center(corners)
    back = np.asarray(B.box_center_to_corner(centers))
    checks = {"centers": difference(centers, book["centers"]),
              "round_trip": difference(back, corners) if book["round_trip_equal"] else float("inf")}
    pixels, image = photo(opts.image)
    draw(run_dir / "bounding_boxes.png", pixels, [("the book's dog and cat boxes (D2L 13.3)", np.asarray(corners), ["dog", "cat"], ("b", "r"))])
    summary = summarise(checks, {"centers": np.asarray(centers).tolist(), "round_trip": back.tolist()}, book) | {"image": image}
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def labelling_example(book: dict[str, Any]):
    """The book's five anchors labelled with its two ground-truth boxes (D2L 13.4.3):
    (offsets (1, 20), mask (1, 20), labels (1, 5)), flattened as the book prints them."""
    truth = np.asarray(book["ground_truth"], np.float32)
    offsets, mask, labels = B.multibox_target(jnp.asarray(book["anchors"], jnp.float32), truth[None, :, 1:],
                                              truth[None, :, 0].astype(np.int32))
    return np.asarray(offsets).reshape(1, -1), np.asarray(mask).reshape(1, -1), np.asarray(labels)


def nms_example(book: dict[str, Any]) -> np.ndarray:
    """The book's four predictions after non-maximum suppression (D2L 13.4.4): (4, 6) rows."""
    probs = jnp.asarray(book["nms_cls_probs"], jnp.float32)[None]
    anchors = jnp.asarray(book["nms_anchors"], jnp.float32)
    return np.asarray(B.multibox_detection(probs, jnp.zeros((1, anchors.shape[0], 4)), anchors, nms_threshold=0.5))[0]


def run_anchor_boxes(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """D2L 13.4: all anchors of the 561 x 728 image, the labelling and NMS examples, compared with
    the book's printed values; anchors.png, labelling.png, nms.png."""
    opts, book = validate_options(GeometryImageOptions, cfg, source), BOOK["13.4"]
    anchors = np.asarray(B.multibox_prior(HEIGHT, WIDTH, book["sizes"], book["ratios"]))
    per_pixel = anchors.reshape(HEIGHT, WIDTH, -1, 4)
    offsets, mask, labels = labelling_example(book)
    detected = nms_example(book)
    checks = {
        "anchor_count": float(abs(anchors.shape[0] - book["anchor_count"])),
        "anchor_250_250": difference(per_pixel[250, 250, 0], book["anchor_250_250"]),
        "labels": difference(labels, book["labels"]), "mask": difference(mask, book["mask"]),
        "offsets": difference(offsets, book["offsets"], scientific=True),
        "nms": difference(detected, book["nms_output"]),
    }
    pixels, image = photo(opts.image)
    sizes, ratios = book["sizes"], book["ratios"]
    names = [f"s={s}, r={ratios[0]}" for s in sizes] + [f"s={sizes[0]}, r={r}" for r in ratios[1:]]
    truth = np.asarray(book["ground_truth"], np.float32)
    nms_anchors = np.asarray(book["nms_anchors"], np.float32)
    kept = detected[detected[:, 0] >= 0]
    classes = ("dog", "cat")
    draw(run_dir / "anchors.png", pixels, [("anchors centred on pixel (250, 250) (D2L 13.4.1)", per_pixel[250, 250] * PIXEL_SCALE, names, ("b", "g", "r", "m", "c"))])
    draw(run_dir / "labelling.png", pixels, [
        ("ground truth (black) and anchors 0-4 (D2L 13.4.3)", np.concatenate((truth[:, 1:], np.asarray(book["anchors"], np.float32))) * PIXEL_SCALE,
         ["dog", "cat", "0", "1", "2", "3", "4"], ("k", "k", "b", "g", "r", "m", "c"))])
    probs = np.asarray(book["nms_cls_probs"])
    draw(run_dir / "nms.png", pixels, [
        ("predictions before NMS", nms_anchors * PIXEL_SCALE,
         [f"{classes[int(np.argmax(probs[1:, i]))]}={probs[1:, i].max():.1f}" for i in range(4)], ("b", "g", "r", "m")),
        ("after NMS (D2L 13.4.4)", kept[:, 2:] * PIXEL_SCALE, [f"{classes[int(c)]}={s:.1f}" for c, s in kept[:, :2]], ("b", "g", "r", "m"))])
    values = {"anchor_count": int(anchors.shape[0]), "anchor_250_250": per_pixel[250, 250, 0].tolist(), "labels": labels.tolist(),
              "mask": mask.tolist(), "offsets": offsets.tolist(), "nms_output": detected.tolist()}
    summary = summarise(checks, values, book) | {"image": image}
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def run_multiscale_anchors(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """D2L 13.5.1: anchors on 4 x 4, 2 x 2 and 1 x 1 feature maps (the book's display_anchors),
    their counts and centres checked; multiscale_anchors.png."""
    opts, book = validate_options(GeometryImageOptions, cfg, source), BOOK["13.5"]
    pixels, image = photo(opts.image)
    checks, values, panels = {}, {}, []
    for name, spec in book["maps"].items():
        fmap_h, fmap_w = (int(n) for n in name.split("x"))
        # as the book, the anchors take the feature map's aspect (its width correction is 1 here)
        anchors = np.asarray(B.multibox_prior(fmap_h, fmap_w, [spec["size"]], RATIOS))
        centers = np.asarray(B.box_corner_to_center(anchors))[:, :2]
        xs, ys = np.unique(np.round(centers[:, 0], 6)), np.unique(np.round(centers[:, 1], 6))
        checks[f"{name}/count"] = float(abs(anchors.shape[0] - spec["count"]))
        checks[f"{name}/centers"] = max(difference(xs, spec["centers"]), difference(ys, spec["centers"]))
        values[name] = {"count": int(anchors.shape[0]), "centers_x": xs.tolist(), "centers_y": ys.tolist()}
        panels.append((f"{name} feature map, s={spec['size']}", anchors * PIXEL_SCALE, None, ("b", "g", "r")))
    draw(run_dir / "multiscale_anchors.png", pixels, panels)
    summary = summarise(checks, values, book) | {"image": image}
    disk.write_json(run_dir / "summary.json", summary)
    return summary
