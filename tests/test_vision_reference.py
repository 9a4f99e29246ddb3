"""The speed benchmark's PyTorch references of chapter 13 are the networks dlrun trains: the same
parameter counts and output shapes, and the same anchor labels (benchmarks/vision_reference.py)."""

import numpy as np
import pytest

from .conftest import CONFIGS
from .test_benchmarks import benchmark_module


@pytest.mark.parametrize("config, shape", [("tiny_ssd_cpu.yaml", (96, 96, 3)), ("banana_ssd.yaml", (256, 256, 3))])
def test_the_pytorch_tinyssd_is_the_same_network(config, shape):
    torch = pytest.importorskip("torch")
    import jax

    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.models import build_model
    from dlrun.core.nn.params import count

    reference = benchmark_module("vision_reference")
    m = load_config(CONFIGS / config).model
    net = reference.TinySSD(m.num_classes, tuple(m.base_widths), tuple(m.widths))
    anchors, cls, bbox = net(torch.zeros(2, 3, shape[0], shape[1]))
    model = build_model(m, BatchSpec(shape, m.num_classes, m.num_classes))
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    out, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x), params, state, jax.ShapeDtypeStruct((2, *shape), np.float32))
    assert out["cls"].shape == tuple(cls.shape) and out["bbox"].shape == (2, anchors.shape[0], 4) == (2, bbox.shape[1] // 4, 4)
    assert sum(p.numel() for p in net.parameters()) == count(params)


def test_the_pytorch_anchor_labels_are_dlruns():
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp

    from dlrun.core.nn.boxes import multibox_prior, multibox_target

    reference = benchmark_module("vision_reference")
    anchors = multibox_prior(6, 5, [0.3, 0.5], [1, 2, 0.5])
    np.testing.assert_allclose(reference.multibox_prior(6, 5, [0.3, 0.5], [1, 2, 0.5]).numpy(), np.asarray(anchors), atol=1e-6)
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(size=(4, 2, 2, 2)), axis=2).astype(np.float32)  # (batch, objects, x|y, low|high)
    boxes = np.stack([corners[..., 0, 0], corners[..., 1, 0], corners[..., 0, 1], corners[..., 1, 1]], axis=-1)
    classes = np.array([[0, -1], [1, 0], [0, 0], [-1, -1]], np.int32)
    classes[3, 0] = 1  # every image holds at least one object
    offsets, mask, labels = multibox_target(anchors, jnp.asarray(boxes), jnp.asarray(classes))
    t_offsets, t_mask, t_labels = reference.multibox_target(torch.from_numpy(np.array(anchors)),
                                                            torch.from_numpy(reference.as_labels(boxes, classes)))
    np.testing.assert_array_equal(t_labels.numpy(), np.asarray(labels))
    np.testing.assert_array_equal(t_mask.numpy().reshape(4, -1, 4), np.asarray(mask))
    np.testing.assert_allclose(t_offsets.numpy().reshape(4, -1, 4), np.asarray(offsets), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config, shape", [("fcn_cpu.yaml", (64, 96, 3)), ("fcn_voc.yaml", (320, 480, 3))])
def test_the_pytorch_fcn_is_the_same_network(config, shape):
    torch = pytest.importorskip("torch")
    import jax

    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.models import build_model
    from dlrun.core.nn.params import count

    reference = benchmark_module("vision_reference")
    cfg = load_config(CONFIGS / config)
    classes = cfg.data.generated.num_classes if cfg.data.source == "generated" else 21
    net = reference.fcn_net(cfg.model.stages, cfg.model.stem, classes)
    assert tuple(net(torch.zeros(1, 3, shape[0], shape[1])).shape) == (1, classes, shape[0], shape[1])
    params, _ = jax.eval_shape(build_model(cfg.model, BatchSpec(shape, classes, classes)).init, jax.random.PRNGKey(0))
    assert sum(p.numel() for p in net.parameters()) == count(params)
