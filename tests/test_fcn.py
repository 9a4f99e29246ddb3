"""The fully convolutional network (D2L 13.11): its shapes at the book's 320x480, the bilinear
kernel against a loop port of the book's `bilinear_kernel`, the doubling transposed convolution
against bilinear interpolation written out (and PyTorch's ConvTranspose2d), the label pictures,
and a short training run through the one loop on a small generated set."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import load_config
from dlrun.core.config.segmentation import FCNModel
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.fcn import bilinear_kernel, bilinear_upsampler, fcn_model
from dlrun.core.report.masks import label_to_image, plot_masks
from dlrun.core.report.progress import make_reporter
from dlrun.core.training.train import train

from .conftest import CONFIGS


def book_bilinear_kernel(in_channels, out_channels, kernel_size):
    """The book's bilinear_kernel, element by element, in PyTorch's (C_in, C_out, k, k) layout."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size))
    for c in range(in_channels):
        for i in range(kernel_size):
            for j in range(kernel_size):
                weight[c, c, i, j] = (1 - abs(i - center) / factor) * (1 - abs(j - center) / factor)
    return weight


@pytest.mark.parametrize("kernel_size", [3, 4, 5, 16, 64])
def test_the_bilinear_kernel_is_the_books(kernel_size):
    ours = bilinear_kernel(3, 3, kernel_size)
    assert ours.shape == (kernel_size, kernel_size, 3, 3)
    np.testing.assert_allclose(ours, book_bilinear_kernel(3, 3, kernel_size).transpose(2, 3, 0, 1), atol=1e-7)
    with pytest.raises(ValueError, match="in_channels"):
        bilinear_kernel(3, 2, kernel_size)


def bilinear_resize_2x(x: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (2H, 2W, C) by bilinear interpolation with pixel centres at half-integers:
    output pixel o samples the input at o / 2 - 1/4, between its two neighbours. Valid where
    both neighbours exist (not the outermost output rows and columns)."""
    h, w, c = x.shape
    out = np.full((2 * h, 2 * w, c), np.nan)
    for oi in range(2 * h):
        for oj in range(2 * w):
            si, sj = oi / 2 - 0.25, oj / 2 - 0.25
            i0, j0 = int(np.floor(si)), int(np.floor(sj))
            if not (0 <= i0 < h - 1 and 0 <= j0 < w - 1):
                continue
            a, b = si - i0, sj - j0
            out[oi, oj] = ((1 - a) * (1 - b) * x[i0, j0] + (1 - a) * b * x[i0, j0 + 1]
                           + a * (1 - b) * x[i0 + 1, j0] + a * b * x[i0 + 1, j0 + 1])
    return out


def test_the_bilinear_transposed_convolution_doubles_an_image_by_interpolating_it(key):
    x = np.random.default_rng(0).random((2, 7, 9, 3)).astype(np.float32)
    layer = bilinear_upsampler(3)
    out_shape, params, state = layer.init(key, (7, 9, 3))
    y, _ = layer.apply(params, state, jnp.asarray(x))
    assert out_shape == (14, 18, 3) and y.shape == (2, 14, 18, 3) and set(params) == {"w"}
    for b in range(2):
        ref = bilinear_resize_2x(x[b])
        interior = ~np.isnan(ref[..., 0])
        assert interior[1:-1, 1:-1].all()  # all but the outermost ring
        np.testing.assert_allclose(np.asarray(y[b])[interior], ref[interior], atol=1e-5)


def test_the_doubling_matches_pytorchs_transposed_convolution(key):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).random((1, 6, 8, 3)).astype(np.float32)
    conv = torch.nn.ConvTranspose2d(3, 3, kernel_size=4, padding=1, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(book_bilinear_kernel(3, 3, 4), dtype=torch.float32))
        expected = conv(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    layer = bilinear_upsampler(3)
    _, params, state = layer.init(key, (6, 8, 3))
    np.testing.assert_allclose(np.asarray(layer.apply(params, state, jnp.asarray(x))[0]), expected, atol=1e-5)


def test_the_books_fcn_labels_every_pixel_of_a_320x480_image(key):
    cfg = FCNModel()
    assert cfg.downsampling() == 32 and cfg.upsampling() == (64, 32, 16)  # the book's transposed convolution
    model = fcn_model(cfg, BatchSpec((320, 480, 3), 21, 21))
    params, state = jax.eval_shape(model.init, key)
    images = jax.ShapeDtypeStruct((2, 320, 480, 3), jnp.float32)
    out, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x), params, state, images)
    assert out.shape == (2, 320, 480, 21)
    assert params["conv1"]["w"].shape == (1, 1, 512, 21) and params["convT0"]["w"].shape == (64, 64, 21, 21)
    # torchvision's ResNet-18 without avgpool and fc: 11,689,512 - 513,000 = 11,176,512 parameters; this body's
    # convolutions have biases (64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512 = 4,800) and its 1x1 projections no batch
    # norm (2 * (128 + 256 + 512) = 1,792 fewer); the head: 512 * 21 + 21 and 64 * 64 * 21 * 21 + 21
    expected = 11_176_512 + 4_800 - 1_792 + (512 * 21 + 21) + (64 * 64 * 21 * 21 + 21)
    assert sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params)) == expected
    with pytest.raises(ValueError, match="multiples of 32"):
        fcn_model(cfg, BatchSpec((300, 480, 3), 21, 21))


def test_the_transposed_convolution_starts_bilinear_and_the_sides_come_back_for_small_bodies(key):
    cfg = FCNModel(stages=((8, 1), (16, 1)), stem="small_pooled")
    assert cfg.upsampling() == (8, 4, 2)
    model = fcn_model(cfg, BatchSpec((16, 24, 3), 5, 5))
    params, state = jax.eval_shape(model.init, key)
    head = dict(model.net.children)["convT0"]  # the network's own transposed convolution, initialised alone
    np.testing.assert_allclose(np.asarray(head.init(key, (4, 6, 5))[1]["w"]), bilinear_kernel(5, 5, 8))
    images = jax.ShapeDtypeStruct((1, 16, 24, 3), jnp.float32)
    out, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x), params, state, images)
    assert out.shape == (1, 16, 24, 5)
    small = FCNModel(stages=((8, 1),), stem="small")
    assert small.upsampling() == (3, 1, 1)
    params, state = jax.eval_shape(fcn_model(small, BatchSpec((5, 7, 3), 2, 2)).init, key)
    assert params["convT0"]["w"].shape == (3, 3, 2, 2)


def test_labels_become_their_colours_and_the_picture_is_written(tmp_path):
    colormap = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    labels = np.array([[0, 1], [2, 1]])
    np.testing.assert_array_equal(label_to_image(labels, colormap), [[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [128, 0, 0]]])
    with pytest.raises(ValueError, match="3 colours"):
        label_to_image(np.array([[3]]), colormap)
    images = np.random.default_rng(0).random((2, 8, 12, 3))
    masks = np.random.default_rng(1).integers(0, 3, (2, 8, 12))
    plot_masks(tmp_path / "masks.png", images, masks, masks[::-1], colormap, "t")
    assert (tmp_path / "masks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # about 15 s alone, most of it compiling; 50 s on a shared, loaded 2-core machine
def test_a_short_run_through_the_loop_lowers_the_loss_and_beats_the_majority_class(tmp_path):
    cfg = load_config(CONFIGS / "fcn_cpu.yaml", [
        "data.crop=[32,48]", "data.batch_size=16", "data.generated.num_train=64", "data.generated.num_val=16",
        "data.generated.min_size=[32,48]", "data.generated.max_size=[36,52]", "model.stages=[[8,1],[16,1]]",
        "trainer.epochs=3", "trainer.progress=none"])
    result = train(cfg, tmp_path / "run", plot=False, reporter=make_reporter("none", 0, ""))
    rows = result.rows
    assert rows[-1]["train/loss"] < 0.7 * rows[0]["train/loss"]
    from dlrun.core.data import load_dataset

    majority = load_dataset(cfg.data, cfg.seed).meta["train_majority_share"]
    assert 0.5 < majority < 0.9
    assert rows[-1]["train/acc"] > majority + 0.03, (rows[-1]["train/acc"], majority)
    assert (tmp_path / "run" / "summary.json").is_file() and "val/acc" in result.summary


def test_the_body_has_a_resnets_parameter_paths_so_a_trained_resnet_copies_in(key):
    """`init_from: {run: <a resnet run>, exclude: [conv1/*, convT0/*]}` finds every body array
    under the same path and shape in a ResNet classifier of the same stages on RGB images."""
    from dlrun.core.config.models import ResNetModel
    from dlrun.core.nn.models import build_model
    from dlrun.core.nn.params import path_name

    stages = ((8, 1), (16, 2))
    fcn_params, fcn_state = jax.eval_shape(fcn_model(FCNModel(stages=stages, stem="small_pooled"),
                                                     BatchSpec((16, 24, 3), 4, 4)).init, key)
    resnet = build_model(ResNetModel(stages=stages, stem="small_pooled"), BatchSpec((16, 24, 3), 10, 10))
    res_params, res_state = jax.eval_shape(resnet.init, key)

    def named(tree):
        return {path_name(p): leaf.shape for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}

    body = {k: v for k, v in named(fcn_params).items() if not k.startswith(("conv1/", "convT0/"))}
    assert body and all(named(res_params).get(k) == v for k, v in body.items())
    assert named(fcn_state) == named(res_state)  # the batch-norm statistics too
    assert set(named(fcn_params)) - set(body) == {"conv1/w", "conv1/b", "convT0/w", "convT0/b"}
