"""The VGG-19 features stack against a plain torch.nn port of torchvision's `vgg19().features`
run through the book's `extract_features` loop (D2L 13.12), with random weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.errors import ConfigError
from dlrun.core.nn import torchvision_vgg as V

BOOK_TAPS = (0, 5, 10, 19, 25, 28)  # the book's style layers and content layer


def torch_vgg19_features(torch):
    """torchvision's `make_layers(cfgs["E"])`, written out: Conv2d 3x3 p1 + ReLU(inplace=True), MaxPool2d(2)."""
    nn, layers, c_in = torch.nn, [], 3
    for c in V.VGG19:
        if c == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
    return nn.Sequential(*layers)


def book_extract(torch, features, x, taps):
    """The book's `extract_features` over `net = features[:max(taps) + 1]` (in-place ReLUs kept)."""
    net = torch.nn.Sequential(*[features[i] for i in range(max(taps) + 1)])
    out = {}
    with torch.no_grad():
        for i in range(len(net)):
            x = net[i](x)
            if i in taps:
                out[i] = x
    return {i: v.numpy().transpose(0, 2, 3, 1) for i, v in out.items()}


@pytest.fixture(scope="module")
def torch_net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch_vgg19_features(torch).eval()
    x = torch.rand(1, 3, 32, 48)
    return torch, net, x


@pytest.mark.parametrize("suffix", [".pth", ".npz"])
def test_loaded_vgg19_features_match_torch(torch_net, tmp_path, suffix):
    torch, net, x = torch_net
    state = {f"features.{k}": v for k, v in net.state_dict().items()}  # the keys of torchvision's whole model
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        np.savez(path, **{k: v.numpy() for k, v in state.items()})
    ref = book_extract(torch, net, x.clone(), BOOK_TAPS)
    features = V.load(path)
    ours = jax.jit(lambda params, x: V.extract(features._replace(params=params), x, BOOK_TAPS))(
        features.params, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    assert sorted(ours) == sorted(BOOK_TAPS)
    for i in BOOK_TAPS:
        scale = float(np.abs(ref[i]).max())
        np.testing.assert_allclose(np.asarray(ours[i]), ref[i], rtol=1e-4, atol=1e-4 * scale, err_msg=f"layer {i}")
    # in the book a tapped conv is seen after its in-place ReLU, except the last module run
    assert (ref[25] >= 0).all() and (ref[28] < 0).any()


def test_a_tap_before_the_last_sees_the_relu_only_when_the_net_runs_past_it(torch_net):
    torch, net, x = torch_net
    for taps in ((0,), (0, 2)):
        ref = book_extract(torch, net, x.clone(), taps)
        features = V.Features(V.layer_kinds(), V.from_state_dict({k: v.numpy() for k, v in net.state_dict().items()}))
        ours = V.extract(features, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)), taps)
        np.testing.assert_allclose(np.asarray(ours[0]), ref[0], rtol=1e-4, atol=1e-5)


def test_layer_kinds_number_modules_as_torchvision():
    kinds = V.layer_kinds()
    assert len(kinds) == 37  # torchvision's vgg19().features has 37 modules
    assert [i for i, k in enumerate(kinds) if k == "pool"] == [4, 9, 18, 27, 36]
    assert all(kinds[i] == "conv" for i in (0, 5, 10, 19, 25, 28))
    assert V.conv_shapes()["28"] == (3, 3, 512, 512) and V.conv_shapes()["0"] == (3, 3, 3, 64)


def test_a_wrong_state_dict_is_named(tmp_path):
    shapes = V.conv_shapes()
    state = {f"features.{i}.weight": np.zeros((s[3], s[2], 3, 3), np.float32) for i, s in shapes.items()}
    state |= {f"features.{i}.bias": np.zeros(s[3], np.float32) for i, s in shapes.items()}
    missing = dict(state)
    del missing["features.10.bias"]
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ConfigError, match=r"missing.npz: has no features.10.bias"):
        V.load(tmp_path / "missing.npz")
    state["features.0.weight"] = np.zeros((64, 1, 3, 3), np.float32)
    with pytest.raises(ConfigError, match=r"features.0.weight has shape \(64, 1, 3, 3\)"):
        V.from_state_dict(state, source="w.npz")


def test_dlrun_vgg_blocks_as_a_features_stack(key):
    """The conv blocks of dlrun's VGG, read as a features stack, give what the blocks themselves do."""
    from dlrun.core.config import VGGModel
    from dlrun.core.nn import cnn

    cfg = VGGModel(blocks=((1, 4), (2, 8)), hidden=16, dropout=0.0)
    net = cnn.vgg(cfg, 5)
    # random values in the layout dlrun's init gives (its shapes, without compiling the init)
    shapes = jax.eval_shape(lambda k: net.init(k, (8, 8, 3))[1:], key)
    rng = np.random.default_rng(0)
    params, state = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    features = V.from_dlrun_vgg(params, cfg.blocks)
    assert features.kinds == ("conv", "relu", "pool", "conv", "relu", "conv", "relu", "pool")

    @jax.jit
    def blocks(x):
        for name, block in net.children[:2]:
            x, _ = block.apply(params[name], state.get(name, {}), x)
        return x

    ours = jax.jit(lambda x: V.extract(features, x, (7,))[7])(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(blocks(x)), rtol=1e-5, atol=1e-6)
