"""TinySSD (D2L 13.7): the book's shapes and anchor order, the loss and metrics against numpy
ports of the book's `calc_loss`, `cls_eval` and `bbox_eval`, the training step against central
differences, detections and their picture, and a short run through the one training loop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlrun.core.config import load_config
from dlrun.core.config.detection import TinySSDModel
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.boxes import multibox_target
from dlrun.core.nn.losses import LOSSES
from dlrun.core.nn.models import build_model
from dlrun.core.nn.ssd import detect
from dlrun.core.nn.ssd_loss import bbox_mae, class_error, ssd_loss, top_iou
from dlrun.core.report.detections import plot_detections, shown_detections
from dlrun.core.training.state import Arrays, TrainState
from dlrun.core.training.steps import make_train_step

from .conftest import CONFIGS


def np_multibox_prior(h, w, sizes, ratios):
    """The book's multibox_prior (D2L 13.4.1), a numpy loop over pixels and boxes."""
    out = []
    for i in range(h):
        for j in range(w):
            cy, cx = (i + 0.5) / h, (j + 0.5) / w
            shapes = [(s * math.sqrt(ratios[0]), s / math.sqrt(ratios[0])) for s in sizes]
            shapes += [(sizes[0] * math.sqrt(r), sizes[0] / math.sqrt(r)) for r in ratios[1:]]
            for bw, bh in shapes:
                bw = bw * h / w
                out.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return np.array(out)


def np_calc_loss(cls, labels, bbox, offsets, mask):
    """The book's calc_loss: cross-entropy per anchor, L1 of masked offsets, means per example."""
    b, n, _ = cls.shape
    log_p = cls - np.log(np.exp(cls).sum(-1, keepdims=True))
    ce = np.array([[-log_p[i, a, labels[i, a]] for a in range(n)] for i in range(b)]).mean(1)
    l1 = np.abs(bbox.reshape(b, -1) * mask.reshape(b, -1) - offsets.reshape(b, -1) * mask.reshape(b, -1)).mean(1)
    return ce + l1


def np_offset_inverse(anchor, offset):
    cx, cy, w, h = (anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2, anchor[2] - anchor[0], anchor[3] - anchor[1]
    px, py = offset[0] * w / 10 + cx, offset[1] * h / 10 + cy
    pw, ph = math.exp(offset[2] / 5) * w, math.exp(offset[3] / 5) * h
    return np.array([px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2])


def np_iou(a, b):
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_books_tiny_ssd_at_256_has_its_5444_anchors_and_prediction_shapes():
    model = build_model(TinySSDModel(), BatchSpec((256, 256, 3), 1, 1))
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    out, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x), params, state, jax.ShapeDtypeStruct((32, 256, 256, 3), jnp.float32))
    # the book prints: anchors (1, 5444, 4), class preds (32, 5444, 2), bbox preds (32, 21776)
    assert out["anchors"].shape == (32, 5444, 4) and out["cls"].shape == (32, 5444, 2)
    assert out["bbox"].shape == (32, 5444, 4) and math.prod(out["bbox"].shape[1:]) == 21776


TINY = TinySSDModel(base_widths=(2,), widths=(2,), sizes=((0.2, 0.3), (0.5, 0.6), (0.9, 0.95)),
                    ratios=((1.0, 2.0, 0.5),) * 3, batch_norm="concise", conv_impl="xla")


@pytest.fixture(scope="module")
def tiny():
    """A TinySSD of three scales for 16x16 images (8x8, 4x4 and 1x1 maps), its params and state."""
    model = build_model(TINY, BatchSpec((16, 16, 3), 1, 1))
    return (model, *jax.jit(model.init)(jax.random.PRNGKey(3)))


def test_anchors_and_predictions_run_pixel_by_pixel_as_the_books_flatten_pred(tiny):
    model, params, state = tiny
    cfg = TINY
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 3))
    out, _ = jax.jit(lambda p, s, x: model.apply(p, s, x))(params, state, x)
    maps = [(8, 8), (4, 4), (1, 1)]  # the base network halves once, the block once, then the global pool
    want = np.concatenate([np_multibox_prior(h, w, s, r) for (h, w), s, r in zip(maps, cfg.sizes, cfg.ratios)])
    np.testing.assert_allclose(np.asarray(out["anchors"][1]), want, atol=1e-6)
    # the first scale's class map (B, 8, 8, A (C + 1)), read as the book's permute-and-flatten does
    children = dict(model.net.children)
    first_scale = jax.jit(lambda p, s, x: children["cls0"].apply(p["cls0"], {}, children["blk0"].apply(p["blk0"], s["blk0"], x)[0])[0])
    cls_map = np.asarray(first_scale(params, state, x))
    for (i, j, a, c) in [(0, 0, 0, 0), (0, 1, 0, 1), (3, 5, 2, 1), (7, 7, 3, 0)]:
        index = (i * 8 + j) * 4 + a
        assert out["cls"][0, index, c] == pytest.approx(cls_map[0, i, j, a * 2 + c], abs=1e-6)
        cx, cy = (want[index, 0] + want[index, 2]) / 2, (want[index, 1] + want[index, 3]) / 2
        assert (cx, cy) == pytest.approx(((j + 0.5) / 8, (i + 0.5) / 8))  # that anchor sits on that pixel


def random_case(key, batch=3, n_boxes=2):
    rng = np.random.default_rng(key)
    anchors = np.concatenate([np_multibox_prior(4, 4, (0.3, 0.4), (1.0, 2.0, 0.5)),
                              np_multibox_prior(2, 2, (0.6, 0.7), (1.0, 2.0, 0.5))]).astype(np.float32)
    n = len(anchors)
    corner = rng.uniform(0, 0.5, (batch, n_boxes, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.2, 0.5, (batch, n_boxes, 2))], -1).astype(np.float32)
    classes = rng.integers(0, 2, (batch, n_boxes)).astype(np.int32)
    classes[0, 1] = -1  # padding
    out = {"cls": rng.normal(size=(batch, n, 3)).astype(np.float32), "bbox": rng.normal(size=(batch, n, 4)).astype(np.float32),
           "anchors": np.broadcast_to(anchors, (batch, n, 4)).copy()}
    return out, {"boxes": boxes, "classes": classes}


def test_loss_and_metrics_agree_with_numpy_ports_of_the_book():
    out, y = random_case(0)
    offsets, mask, labels = (np.asarray(a, np.float64) for a in multibox_target(out["anchors"][0], y["boxes"], y["classes"]))
    labels = labels.astype(np.int64)
    assert labels.max() > 0  # some anchors have boxes, so the masked terms are not all zero
    cls, bbox = out["cls"].astype(np.float64), out["bbox"].astype(np.float64)
    got = jax.jit(lambda out, y: [f(out, y) for f in (ssd_loss, class_error, bbox_mae, top_iou)])(out, y)
    np.testing.assert_allclose(got[0], np_calc_loss(cls, labels, bbox, offsets, mask), rtol=1e-5)
    correct = (cls.argmax(-1) == labels).sum(1)  # the book's cls_eval, per example
    np.testing.assert_allclose(got[1], 1 - correct / labels.shape[1], rtol=1e-6)
    abs_err = np.abs((offsets - bbox) * mask).reshape(len(cls), -1)  # the book's bbox_eval, per example
    np.testing.assert_allclose(got[2], abs_err.sum(1) / abs_err.shape[1], rtol=1e-5)
    want = []
    for i in range(len(cls)):
        p = np.exp(cls[i]) / np.exp(cls[i]).sum(-1, keepdims=True)
        best = int(np.argmax(p[:, 1:].max(-1)))
        want.append(np_iou(np_offset_inverse(out["anchors"][i, best], bbox[i, best]), y["boxes"][i, 0]))
    np.testing.assert_allclose(got[3], want, rtol=1e-4, atol=1e-6)


def test_the_training_step_follows_central_differences_of_the_loss(tiny):
    model, params, state = tiny
    x = jax.random.uniform(jax.random.PRNGKey(4), (2, 16, 16, 3))
    y = {"boxes": jnp.array([[[0.1, 0.1, 0.6, 0.5]], [[0.4, 0.3, 0.9, 0.9]]]), "classes": jnp.zeros((2, 1), jnp.int32)}
    optimizer, lr = optax.sgd(0.5), 0.5
    start = TrainState(params, optimizer.init(params), state, jnp.zeros((), jnp.int32))
    new, metrics = jax.jit(make_train_step(model, LOSSES["ssd"], optimizer))(start, Arrays(x, y), jax.random.PRNGKey(5))

    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), start.params)
        x64 = jnp.asarray(x, jnp.float64)
        f = jax.jit(lambda p: jnp.mean(ssd_loss(model.apply(p, start.model_state, x64, train=True)[0], y)))
        np.testing.assert_allclose(metrics["loss"], f(p64), rtol=1e-5)
        for path in (("cls0", "w"), ("bbox1", "b"), ("blk0", "down_sample0", "conv1", "w")):
            leaf = p64
            for k in path:
                leaf = leaf[k]
            flat_index = np.unravel_index(np.arange(0, leaf.size, max(1, leaf.size // 4)), leaf.shape)
            for idx in zip(*flat_index):
                def moved(eps):
                    return f(_set(p64, path, leaf.at[idx].add(eps)))
                grad = (moved(1e-6) - moved(-1e-6)) / 2e-6
                got = _get(new.params, path)[idx]
                np.testing.assert_allclose(got, _get(start.params, path)[idx] - lr * grad, rtol=1e-4, atol=2e-6)
        assert f(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), new.params)) < f(p64)


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _set(tree, path, value):
    if not path:
        return value
    return {**tree, path[0]: _set(tree[path[0]], path[1:], value)}


def test_detections_keep_the_best_box_and_are_drawn(tmp_path):
    out, y = random_case(1, batch=2)
    out["cls"][:, :, 0] = 0.0
    out["cls"][:, :, 1:] = -5.0
    out["cls"][0, 7, 1] = 8.0  # one confident anchor
    found = np.asarray(jax.jit(detect)(out))
    assert found.shape == (2, out["cls"].shape[1], 6)
    assert found[0, 0, 0] == 0 and found[0, 0, 1] == pytest.approx(np.exp(8) / (np.exp(8) + 1 + np.exp(-5)), rel=1e-5)
    np.testing.assert_allclose(found[0, 0, 2:], np_offset_inverse(out["anchors"][0, 7], out["bbox"][0, 7]), rtol=1e-5, atol=1e-6)
    assert len(shown_detections(found[0], 0.9)) == 1 and len(shown_detections(found[1], 0.9)) == 0
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3))
    plot_detections(tmp_path / "detections.png", images, found, y["boxes"], y["classes"], 0.9, "test")
    assert (tmp_path / "detections.png").stat().st_size > 1000


@pytest.mark.slow  # about 30 s: compiles a training epoch, evaluation and the detections
def test_a_short_run_through_the_one_loop_lowers_the_loss(tmp_path):
    from dlrun.experiments import run_config

    cfg = load_config(CONFIGS / "tiny_ssd_cpu.yaml", [
        "data.num_train=48", "data.num_val=8", "data.size=32", "data.batch_size=16",
        "model.base_widths=[8, 16]", "model.widths=[16, 16, 16]", "trainer.epochs=3", "trainer.progress=none"])
    summary = run_config(cfg, tmp_path / "run")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("train/loss")]) for r in rows[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert {"val/class_err", "val/bbox_mae", "val/top_iou"} <= set(summary)
    assert (tmp_path / "run" / "detections.png").is_file()
