"""Neural style transfer (D2L 13.12): its losses against NumPy ports of the book's code, the
whole loss and its gradient against the book's PyTorch code, and a tiny run end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import MLPModel, derive, load_config
from dlrun.core.errors import ConfigError, DataNotFoundError
from dlrun.core.nn import torchvision_vgg as V
from dlrun.experiments import experiment_for, run_config
from dlrun.experiments import style_transfer as S

from .conftest import CONFIGS


def nchw(x):
    return np.asarray(x, np.float64).transpose(0, 3, 1, 2)


def np_gram(x):
    """The book's `gram` on an NCHW array: (c, n) @ (n, c) / (c n)."""
    c, n = x.shape[1], x.size // x.shape[1]
    flat = x.reshape(c, n)
    return flat @ flat.T / (c * n)


def np_tv_loss(y):
    """The book's `tv_loss`, NCHW."""
    return 0.5 * (np.abs(y[:, :, 1:, :] - y[:, :, :-1, :]).mean() + np.abs(y[:, :, :, 1:] - y[:, :, :, :-1]).mean())


@pytest.fixture
def maps(key):
    return [jax.random.normal(jax.random.fold_in(key, i), (1, 5, 7, 3)) for i in range(2)]


def test_content_loss_is_the_mean_squared_error(maps):
    a, b = maps
    np.testing.assert_allclose(float(S.content_loss(a, b)), np.mean((nchw(a) - nchw(b)) ** 2), rtol=1e-5)


def test_gram_matches_the_books_on_nchw(maps):
    a, _ = maps
    expected = np_gram(nchw(a))
    np.testing.assert_allclose(np.asarray(S.gram(a)), expected, rtol=1e-5, atol=1e-7)
    assert S.gram(a).shape == (3, 3)
    # a sum of outer products of pixels' channel vectors, divided by c h w
    loop = sum(np.outer(v, v) for v in np.asarray(a, np.float64).reshape(-1, 3)) / a.size
    np.testing.assert_allclose(np.asarray(S.gram(a)), loop, rtol=1e-5, atol=1e-7)


def test_style_loss_compares_gram_matrices(maps):
    a, b = maps
    expected = np.mean((np_gram(nchw(a)) - np_gram(nchw(b))) ** 2)
    np.testing.assert_allclose(float(S.style_loss(a, S.gram(b))), expected, rtol=1e-5)
    assert float(S.style_loss(a, S.gram(a))) == 0.0


def test_tv_loss_matches_the_books(maps):
    a, _ = maps
    np.testing.assert_allclose(float(S.tv_loss(a)), np_tv_loss(nchw(a)), rtol=1e-5)
    assert float(S.tv_loss(jnp.ones((1, 4, 6, 3)))) == 0.0
    # a vertical step of 1 between two halves: only vertical neighbours differ, once per column
    step = jnp.zeros((1, 4, 6, 1)).at[:, 2:].set(1.0)
    np.testing.assert_allclose(float(S.tv_loss(step)), 0.5 * (6 / (3 * 6)), rtol=1e-6)


def test_weighted_loss_and_its_gradient_match_the_books_torch_code(key):
    """The book's compute_loss on a small VGG-like net with random weights: the three weighted
    losses and d total / d image, against torch autograd."""
    torch = pytest.importorskip("torch")
    channels, taps_content, taps_style = (4, "M", 6, 6), (5,), (0, 3, 5)
    torch.manual_seed(1)
    layers, c_in = [], 3
    for c in channels:
        if c == "M":
            layers.append(torch.nn.MaxPool2d(2))
        else:
            layers += [torch.nn.Conv2d(c_in, c, 3, padding=1), torch.nn.ReLU(inplace=True)]
            c_in = c
    net = torch.nn.Sequential(*layers[: max(taps_content + taps_style) + 1])

    def extract(x):
        contents, styles = [], []
        for i in range(len(net)):
            x = net[i](x)
            if i in taps_style:
                styles.append(x)
            if i in taps_content:
                contents.append(x)
        return contents, styles

    def t_gram(x):
        c, n = x.shape[1], x.numel() // x.shape[1]
        x = x.reshape((c, n))
        return x @ x.T / (c * n)

    rng = np.random.default_rng(0)
    content, style, start = (rng.normal(size=(1, 3, 8, 10)).astype(np.float32) for _ in range(3))
    with torch.no_grad():
        contents_y = extract(torch.tensor(content))[0]
        grams_y = [t_gram(y) for y in extract(torch.tensor(style))[1]]
    x = torch.tensor(start, requires_grad=True)
    contents_hat, styles_hat = extract(x)
    c_l = sum(torch.square(a - b).mean() for a, b in zip(contents_hat, contents_y)) * 1.0
    s_l = sum(torch.square(t_gram(a) - g).mean() for a, g in zip(styles_hat, grams_y)) * 1e4
    tv_l = 0.5 * ((x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()) * 10
    (c_l + s_l + tv_l).backward()

    feats = V.Features(V.layer_kinds(channels), V.from_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, channels))
    to_nhwc = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1))
    contents = S.features_at(feats, to_nhwc(content), taps_content)
    grams = {i: S.gram(y) for i, y in S.features_at(feats, to_nhwc(style), taps_style).items()}
    weights = S.Weights(1.0, 1e4, 10.0)
    total = lambda z: S.losses(feats, z, contents, grams, weights)
    parts, grad = jax.jit(lambda z: (total(z), jax.grad(lambda z: total(z)["total"])(z)))(to_nhwc(start))
    for name, ref in (("content", c_l), ("style", s_l), ("tv", tv_l)):
        np.testing.assert_allclose(float(parts[name]), ref.item(), rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(np.asarray(grad), x.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-3, atol=1e-6)


def test_schedule_is_step_lr():
    torch = pytest.importorskip("torch")
    opts = S.StyleTransferOptions()
    _, schedule = S.book_optimizer(opts)
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=opts.lr)
    steps = torch.optim.lr_scheduler.StepLR(opt, opts.lr_period, opts.lr_decay)
    expected = []
    for _ in range(opts.epochs):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        steps.step()
    np.testing.assert_allclose(np.asarray(schedule(jnp.arange(opts.epochs))), expected, rtol=1e-6)


TINY = [
    "experiment.height=20", "experiment.width=16", "experiment.epochs=12", "experiment.lr_period=4",
    "experiment.content_layers=[3]", "experiment.style_layers=[0,3]", "experiment.snapshots=2",
    "experiment.grid=2", "experiment.patch=8", "experiment.patches=64", "experiment.val_patches=32",
    "model.blocks=[[1,4],[1,8]]", "model.hidden=16", "trainer.epochs=1", "data.batch_size=32", "trainer.progress=none",
]


@pytest.mark.slow  # about 10 s on an idle CPU: it trains the feature network first
def test_a_tiny_run_lowers_its_loss_and_draws_its_pictures(tmp_path):
    cfg = load_config(CONFIGS / "style_transfer.yaml", TINY)
    summary = run_config(cfg, tmp_path / "run")
    assert summary["loss/total"] < summary["loss/total_initial"]
    assert "not ImageNet" in summary["features"]
    for name in ("metrics.csv", "summary.json", "images.png", "losses.png", "synthesised.png", "features/summary.json"):
        assert (tmp_path / "run" / name).is_file(), name
    from PIL import Image

    assert Image.open(tmp_path / "run" / "synthesised.png").size == (16, 20)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["loss/total"] == pytest.approx(summary["loss/total"])
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 13 and rows[0].startswith("epoch,")


def test_configs_validate_and_bad_options_are_named(tmp_path):
    for name in ("style_transfer.yaml", "style_transfer_vgg19.yaml"):
        cfg = load_config(CONFIGS / name)
        assert experiment_for(cfg, name).metrics == S.METRICS
    cfg = load_config(CONFIGS / "style_transfer.yaml", [*TINY, "experiment.style_layers=[2]"])
    with pytest.raises(ConfigError, match=r"experiment.style_layers: 2 is not a conv or ReLU module"):
        run_config(cfg, tmp_path / "bad_layer")
    cfg = load_config(CONFIGS / "style_transfer.yaml", [*TINY, "experiment.style=matplotlib:no_such.png"])
    with pytest.raises(ConfigError, match=r"experiment.style: matplotlib has no sample file no_such.png"):
        run_config(cfg, tmp_path / "bad_style")
    cfg = load_config(CONFIGS / "style_transfer.yaml", TINY)
    cfg = derive(cfg, {"model": MLPModel(), "experiment": cfg.experiment})
    with pytest.raises(ConfigError, match=r"model.name: style transfer reads a VGG's conv blocks; expected vgg, found 'mlp'"):
        run_config(cfg, tmp_path / "not_vgg")
    cfg = load_config(CONFIGS / "style_transfer_vgg19.yaml", ["experiment.content=matplotlib:grace_hopper.jpg",
                                                             "experiment.style=matplotlib:grace_hopper.jpg"])
    with pytest.raises(DataNotFoundError, match=r"experiment.weights: weights file vgg19-dcbb9e9d.pth not found"):
        run_config(cfg, tmp_path / "no_weights")
