"""The speed benchmark's PyTorch reference of style transfer's synthesis (D2L 13.12) computes what
dlrun's experiment computes: with dlrun's feature weights copied in, the same features at the
content and style layers, the same loss and gradient, the same Adam steps on the image
(benchmarks/style_transfer_reference.py)."""

import numpy as np
import pytest

from .conftest import CONFIGS
from .test_benchmarks import benchmark_module

# the CPU config's network and layers (style 0, 3, 6, 8; content 8) on a 24 x 20 image
TINY = ["experiment.height=24", "experiment.width=20", "trainer.progress=none"]


@pytest.fixture(scope="module")
def case():
    """The reference module, the tiny config, dlrun's initial feature network, and random
    content and style images (the config's own photos: `test_a_step_from_the_configs_images_is_dlruns`)."""
    pytest.importorskip("torch")
    from dlrun.core.config import load_config

    reference = benchmark_module("style_transfer_reference")
    cfg = load_config(CONFIGS / "style_transfer.yaml", TINY)
    rng = np.random.default_rng(0)
    content, style = (rng.normal(size=(24, 20, 3)).astype(np.float32) for _ in range(2))
    return reference, cfg, reference.feature_net(cfg), content, style


def nchw(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(2, 0, 1)[None]))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def close(actual, expected, rtol):
    """Equal to `rtol` of the largest magnitude (float32 sums in another order)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_the_torch_features_are_dlruns_at_the_content_and_style_layers(case):
    import jax.numpy as jnp

    from dlrun.experiments import style_transfer as S

    reference, cfg, features, content, _ = case
    content_layers, style_layers = reference.layers(cfg)
    net = reference.torch_features(reference.channels(cfg), max(content_layers + style_layers))
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
                                               "Conv2d", "ReLU", "Conv2d"]
    reference.copy_params(net, features.params)
    contents, styles = reference.extract_features(net, nchw(content), content_layers, style_layers)
    found = S.features_at(features, jnp.asarray(content[None]), tuple(sorted({*content_layers, *style_layers})))
    for layer, t in [*zip(content_layers, contents), *zip(style_layers, styles)]:
        assert nhwc(t).shape == found[layer].shape
        close(nhwc(t), found[layer], 1e-5)
    assert np.asarray(found[6]).min() >= 0 and np.asarray(found[8]).min() < 0  # a conv read after its in-place ReLU, but the last


def test_the_vgg19_config_reads_the_books_modules(case):
    from dlrun.core.config import load_config
    from dlrun.core.nn import torchvision_vgg as V

    reference, *_ = case
    cfg = load_config(CONFIGS / "style_transfer_vgg19.yaml")
    assert reference.channels(cfg) == V.VGG19
    net = reference.torch_features(reference.channels(cfg), max(sum(reference.layers(cfg), [])))
    convs = [i for i, m in enumerate(net) if type(m).__name__ == "Conv2d"]
    assert len(net) == 29 and {0, 5, 10, 19, 25, 28} <= set(convs) and net[28].out_channels == 512


def test_the_total_loss_and_its_gradient_are_dlruns(case):
    import jax
    import jax.numpy as jnp

    from dlrun.experiments import style_transfer as S

    reference, cfg, features, content, style = case
    opts = reference.options(cfg)
    s = reference.torch_synthesis(cfg, features, content, style)
    image = np.random.default_rng(1).normal(size=content.shape).astype(np.float32)  # not the content: its loss is 0 there
    X = nchw(image).requires_grad_(True)
    contents_hat, styles_hat = reference.extract_features(s.net, X, s.content_layers, s.style_layers)
    contents_l, styles_l, tv_l, l = reference.compute_loss(X, contents_hat, styles_hat, s.contents_Y, s.styles_Y_gram, s.weights)
    l.backward()

    contents = S.features_at(features, jnp.asarray(content[None]), opts.content_layers)
    grams = {i: S.gram(y) for i, y in S.features_at(features, jnp.asarray(style[None]), opts.style_layers).items()}
    weights = S.Weights(opts.content_weight, opts.style_weight, opts.tv_weight)

    def total(z):
        parts = S.losses(features, z, contents, grams, weights)
        return parts["total"], parts

    (_, parts), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(jnp.asarray(image[None]))
    for name, value in (("content", sum(contents_l)), ("style", sum(styles_l)), ("tv", tv_l), ("total", l)):
        np.testing.assert_allclose(float(parts[name]), value.item(), rtol=1e-5, err_msg=name)
    assert min(float(parts[k]) for k in ("content", "style", "tv")) > 0
    close(np.asarray(grad), nhwc(X.grad), 1e-5)


def test_adam_steps_on_the_image_are_dlruns(case):
    """Five steps with the lr decayed after every two: the same image, the same losses."""
    from dlrun.core.config import load_config

    reference, _, features, content, style = case
    cfg = load_config(CONFIGS / "style_transfer.yaml", [*TINY, "experiment.lr_period=2"])
    s = reference.torch_synthesis(cfg, features, content, style)
    step, x, opt_state = reference.dlrun_synthesis(cfg, features, content, style)
    for _ in range(5):
        torch_loss = reference.torch_epochs(s, 1)
        x, opt_state, dlrun_loss = reference.dlrun_epochs(step, x, opt_state, 1)
        np.testing.assert_allclose(dlrun_loss, torch_loss, rtol=1e-5)
    moved = np.abs(np.asarray(x)[0] - content)
    assert moved.max() > 0.1  # five steps of lr 0.05 have moved the image
    np.testing.assert_allclose(np.asarray(x), nhwc(s.X), atol=1e-5)


def test_run_torch_and_run_dlrun_time_the_same_synthesis(case):
    reference, cfg, features, *_ = case
    outs = {"torch": reference.run_torch(cfg, 2, 1, features=features),
            "dlrun": reference.run_dlrun(cfg, 2, 1, features=features)}
    for name, out in outs.items():
        assert len(out["epoch_seconds"]) == 1 and out["epoch_seconds"][0] > 0, name
        assert out["val_acc"] is None and out["examples_trained"] == 2 and np.isfinite(out["train_loss"]), name
        assert out["compile_seconds"] >= 0 and out["loop"], name
    assert outs["torch"]["compile_seconds"] == 0.0 and outs["torch"]["threads"] >= 1 and "torch" in outs["torch"]
    assert outs["dlrun"].get("flops_per_epoch", 1.0) > 0
    np.testing.assert_allclose(outs["dlrun"]["train_loss"], outs["torch"]["train_loss"], rtol=1e-3)


@pytest.fixture(scope="module")
def configs_step(case):
    """One step of each side from the config's images: (content, dlrun's image, PyTorch's), NHWC."""
    reference, cfg, features, *_ = case
    content, style = reference.images(cfg, features)
    s = reference.torch_synthesis(cfg, features, content, style)
    step, x, opt_state = reference.dlrun_synthesis(cfg, features, content, style)
    reference.torch_epochs(s, 1)
    x, _, _ = reference.dlrun_epochs(step, x, opt_state, 1)
    return content, np.asarray(x)[0], nhwc(s.X)[0]


def test_a_step_from_the_configs_images_is_dlruns(configs_step):
    """The resized photos have flat runs of equal pixels: there the total variation's gradient
    is 0 on both sides (dlrun's tv_loss), so no pixel steps where the book's would not."""
    content, dlrun_x, torch_x = configs_step
    assert (np.diff(content, axis=0) == 0).any()  # the case is there to be seen
    np.testing.assert_allclose(dlrun_x, torch_x, atol=1e-4)
