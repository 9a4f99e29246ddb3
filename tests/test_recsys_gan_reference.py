"""The speed benchmark's PyTorch references of D2L 16.3, 17.1 and 17.2 are the networks dlrun
trains: with dlrun's initial weights copied in, the book's `MF` gives dlrun's ratings, L2 loss,
gradients and Adam-with-weight-decay steps, and the book's `update_D`/`update_G` give dlrun's
two-part step (`core.training.parts`), of the Gaussian GAN and of the DCGAN (its `net_G` and
`net_D` dlrun's parameter count and images and logits): the same losses and the same weights
after each step (benchmarks/recsys_gan_reference.py)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import CONFIGS
from .test_benchmarks import benchmark_module
from .torch_weights import copy_norm

USERS, ITEMS = 6, 9


def rating_batch(rng, n: int = 12) -> tuple[dict, np.ndarray]:
    """(user, item) ids and ratings 1..5 as dlrun's movielens loader lays them out."""
    x = {"user": rng.integers(0, USERS, n).astype(np.int32), "item": rng.integers(0, ITEMS, n).astype(np.int32)}
    return x, rng.integers(1, 6, n).astype(np.float32)


def test_the_books_mf_is_dlruns(key):
    torch = pytest.importorskip("torch")
    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.losses import LOSSES
    from dlrun.core.nn.recsys import mf
    from dlrun.core.training.optimizers import build_optimizer

    ref = benchmark_module("recsys_gan_reference")
    # weights of 0.3, not the config's 0.01, so that the dot products matter next to the biases
    cfg = load_config(CONFIGS / "mf_lowrank.yaml", ["model.num_factors=4", "model.init_scale=0.3", "optimizer.weight_decay=0.1"])
    model = mf(cfg.model, BatchSpec({"user": (), "item": ()}, 1, None, None, None, {"user": USERS, "item": ITEMS}))
    params, state = model.init(key)
    optimizer = build_optimizer(cfg.optimizer, 1, 1)
    loss_fn = LOSSES[cfg.loss.name].fn
    x, y = rating_batch(np.random.default_rng(0))
    xj = {k: jnp.asarray(v) for k, v in x.items()}

    @jax.jit
    def step(params, opt_state):
        def loss(p):
            out, _ = model.apply(p, state, xj)
            return jnp.mean(loss_fn(out, jnp.asarray(y))), out

        (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return jax.tree_util.tree_map(jnp.add, params, updates), opt_state, value, out, grads

    net = ref.mf_net(cfg.model, USERS, ITEMS)
    tables = {"P": net.P, "Q": net.Q, "user_bias": net.user_bias, "item_bias": net.item_bias}
    with torch.no_grad():
        for name, emb in tables.items():
            emb.weight.copy_(torch.tensor(np.asarray(params[name]["w"])))
    trainer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    xt, yt = ref.as_tensors(x), ref.as_tensors({"rating": y})
    opt_state = optimizer.init(params)
    for _ in range(2):  # the second step: Adam's moments carried over, weight decay on moved weights
        params, opt_state, ours, out, grads = step(params, opt_state)
        np.testing.assert_allclose(net(xt["user"], xt["item"]).detach().numpy(), np.asarray(out), rtol=1e-5, atol=1e-6)
        trainer.zero_grad()
        theirs = ref.mf_loss(net, xt, yt).mean()
        theirs.backward()
        assert theirs.item() == pytest.approx(float(ours), rel=1e-5)
        for name, emb in tables.items():
            np.testing.assert_allclose(emb.weight.grad.numpy(), np.asarray(grads[name]["w"]), rtol=1e-5, atol=1e-6)
        trainer.step()
        for name, emb in tables.items():
            np.testing.assert_allclose(emb.weight.detach().numpy(), np.asarray(params[name]["w"]), rtol=1e-5, atol=1e-6)


def copy_dense(torch, layer, p) -> None:
    """A dlrun dense layer's w (in, out) and b into an `nn.Linear` (weight (out, in))."""
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(np.asarray(p["w"]).T))
        layer.bias.copy_(torch.tensor(np.asarray(p["b"])))


def gan_pairs(net_G, net_D, params) -> list:
    """(torch Linear, dlrun dense params) of G and D."""
    d = params["discriminator"]
    return [(net_G[0], params["generator"]["dense0"]), (net_D[0], d["dense0"]), (net_D[2], d["dense1"]), (net_D[4], d["dense2"])]


def test_the_books_gan_updates_are_dlruns(key):
    torch = pytest.importorskip("torch")
    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.gan import gan_mlp
    from dlrun.core.training.optimizers import build_optimizer
    from dlrun.core.training.parts import PartsOptimizer, make_parts_step
    from dlrun.core.training.state import Arrays, TrainState

    ref = benchmark_module("recsys_gan_reference")
    # weights of 0.5, not the book's 0.02, so that tanh is not linear and every layer matters
    cfg = load_config(CONFIGS / "gan_gaussian.yaml", ["model.init_scale=0.5"])
    gan = gan_mlp(cfg.model, BatchSpec((2,), 2))
    params, model_state = gan.init(key)
    optimizer = PartsOptimizer({part: build_optimizer(cfg.optimizers[part], 1, 1) for part in ("discriminator", "generator")})
    step = jax.jit(make_parts_step(gan.updates, optimizer))
    state = TrainState(params, optimizer.init(params), model_state, jnp.int32(0))

    net_G, net_D = ref.gan_nets(cfg.model.latent_dim, 2, cfg.model.init_scale)
    for layer, p in gan_pairs(net_G, net_D, params):
        copy_dense(torch, layer, p)
    loss = torch.nn.BCEWithLogitsLoss()
    trainer_D = torch.optim.Adam(net_D.parameters(), lr=cfg.optimizers["discriminator"].lr)
    trainer_G = torch.optim.Adam(net_G.parameters(), lr=cfg.optimizers["generator"].lr)
    rng = np.random.default_rng(0)
    for i in range(2):
        X = rng.normal(size=(8, 2)).astype(np.float32) @ np.array([[1, 2], [-0.1, 0.5]], np.float32) + [1, 2]
        step_key = jax.random.fold_in(key, i)
        state, metrics = step(state, Arrays(jnp.asarray(X, jnp.float32), None), step_key)
        Z = torch.tensor(np.asarray(jax.random.normal(step_key, (8, cfg.model.latent_dim))))  # dlrun's noise of this key
        Xt = torch.tensor(X, dtype=torch.float32)
        loss_D = ref.update_D(Xt, Z, net_D, net_G, loss, trainer_D)
        loss_G = ref.update_G(Z, net_D, net_G, loss, trainer_G)
        assert loss_D.item() == pytest.approx(float(metrics["loss_D"]), rel=1e-5)
        assert loss_G.item() == pytest.approx(float(metrics["loss_G"]), rel=1e-5)
        for layer, p in gan_pairs(net_G, net_D, state.params):
            np.testing.assert_allclose(layer.weight.detach().numpy().T, np.asarray(p["w"]), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(layer.bias.detach().numpy(), np.asarray(p["b"]), rtol=1e-5, atol=1e-6)


def test_the_references_train_whole_batches_and_report_their_losses():
    """run_mf and run_gan at a tiny size: one warm-up and two timed epochs of shuffled whole
    batches, the examples they trained, the last epoch's losses (MF: its held-out RMSE too)."""
    pytest.importorskip("torch")
    ref = benchmark_module("recsys_gan_reference")
    rng = np.random.default_rng(1)
    x, y = rating_batch(rng, 70)
    xv, yv = rating_batch(rng, 10)
    cfg = SimpleNamespace(seed=0, model=SimpleNamespace(num_factors=4, init_scale=0.01),
                          optimizer=SimpleNamespace(lr=0.01, weight_decay=1e-5), data=SimpleNamespace(batch_size=16))
    data = SimpleNamespace(x_train=x, y_train=y, x_val=xv, y_val=yv, num_train=70, id_counts={"user": USERS, "item": ITEMS})
    out = ref.run_mf(cfg, data, 2)
    assert len(out["epoch_seconds"]) == 2 and out["examples_trained"] == 64
    assert 0 < out["train_loss"] < 10 and 0 < out["val_rmse"] < 5
    cfg = SimpleNamespace(seed=0, model=SimpleNamespace(latent_dim=2, init_scale=0.02), data=SimpleNamespace(batch_size=8),
                          optimizers={"discriminator": SimpleNamespace(lr=0.05), "generator": SimpleNamespace(lr=0.005)})
    out = ref.run_gan(cfg, SimpleNamespace(x_train=rng.normal(size=(44, 2)).astype(np.float32), num_train=44), 2)
    assert len(out["epoch_seconds"]) == 2 and out["examples_trained"] == 40
    assert 0.3 < out["train_loss"] < 1.5 and 0.3 < out["train_loss_G"] < 1.5  # near ln 2 from a near-blind D


# a 16 x 16 grey DCGAN (two blocks on each side) of 4 and 8 channels, 8-d noise; XLA's convolution,
# quicker to compile than oneDNN's, which tests/test_onednn.py checks against it
TINY_DCGAN = ["model.latent_dim=8", "model.generator_channels=4", "model.discriminator_channels=4", "model.conv_impl=xla"]


def dcgan_pairs(net_G, net_D, params) -> list:
    """(torch layer, dlrun params, kind) of every convolution and batch norm of G and D, in order;
    kind `convT`, `conv` or `bn`."""
    g, d = params["generator"], params["discriminator"]
    pairs = []
    for i, block in enumerate(net_G[:-2]):
        pairs += [(block.conv2d_trans, g[f"g_block{i}"]["convT0"], "convT"), (block.batch_norm, g[f"g_block{i}"]["bn0"], "bn")]
    pairs.append((net_G[-2], g["convT0"], "convT"))
    for i, block in enumerate(net_D[:-1]):
        pairs += [(block.conv2d, d[f"d_block{i}"]["conv0"], "conv"), (block.batch_norm, d[f"d_block{i}"]["bn0"], "bn")]
    return [*pairs, (net_D[-1], d["conv0"], "conv")]


# dlrun's kernels are (kh, kw, C_in, C_out); PyTorch's convolution's (C_out, C_in, kh, kw), its
# transposed convolution's (C_in, C_out, kh, kw)
TO_TORCH = {"conv": (3, 2, 0, 1), "convT": (2, 3, 0, 1)}
FROM_TORCH = {"conv": (2, 3, 1, 0), "convT": (2, 3, 0, 1)}


def copy_dcgan(torch, net_G, net_D, params) -> None:
    with torch.no_grad():
        for layer, p, kind in dcgan_pairs(net_G, net_D, params):
            if kind == "bn":
                copy_norm(torch, layer, p)
            else:
                layer.weight.copy_(torch.tensor(np.asarray(p["w"]).transpose(TO_TORCH[kind])))


def assert_dcgan_moves(net_G, net_D, params, start) -> None:
    """Each tensor of the torch nets moved from its value in `start` (dlrun's initial params) as
    dlrun's `params` did, to 1e-4 of the move in norm. Not elementwise: batch norm makes some
    gradients cancel to near 0, and there Adam's step, the gradient over its own size, is float32's
    noise (up to 1e-3 of the learning rate, against 1e-5 elsewhere)."""
    for (layer, p, kind), (_, p0, _) in zip(dcgan_pairs(net_G, net_D, params), dcgan_pairs(net_G, net_D, start)):
        theirs = {"gamma": layer.weight, "beta": layer.bias} if kind == "bn" else {"w": layer.weight.permute(FROM_TORCH[kind])}
        for name, w in theirs.items():
            ours = np.asarray(p[name]) - np.asarray(p0[name])
            assert np.linalg.norm(w.detach().numpy() - np.asarray(p0[name]) - ours) <= 1e-4 * np.linalg.norm(ours), (kind, name)


def test_the_books_dcgan_is_dlruns(key):
    """The same parameter count and, with dlrun's weights, the same images from the same noise
    and the same logits of real images, batch norm in training mode (as both updates run it)."""
    torch = pytest.importorskip("torch")
    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.dcgan import dcgan, discriminator, generator
    from dlrun.core.nn.params import count

    ref = benchmark_module("recsys_gan_reference")
    cfg = load_config(CONFIGS / "dcgan_cpu.yaml", TINY_DCGAN)
    shape = (16, 16, 1)
    params, model_state = dcgan(cfg.model, BatchSpec(shape, 1)).init(key)
    net_G, net_D = ref.dcgan_nets(cfg.model, shape)
    assert sum(w.numel() for w in [*net_G.parameters(), *net_D.parameters()]) == count(params)
    copy_dcgan(torch, net_G, net_D, params)
    net_g, net_d = generator(cfg.model, shape), discriminator(cfg.model, shape)

    @jax.jit
    def forward(z, x):
        images, _ = net_g.apply(params["generator"], model_state["generator"], z, train=True)
        logits, _ = net_d.apply(params["discriminator"], model_state["discriminator"], x, train=True)
        return images, logits

    rng = np.random.default_rng(0)
    z, x = rng.normal(size=(8, 8)).astype(np.float32), rng.uniform(-1, 1, (8, *shape)).astype(np.float32)
    images, logits = forward(z, x)
    theirs_images = net_G(torch.tensor(z).reshape(8, 8, 1, 1)).permute(0, 2, 3, 1)  # NCHW -> dlrun's NHWC
    np.testing.assert_allclose(theirs_images.detach().numpy(), np.asarray(images), rtol=1e-5, atol=1e-6)
    theirs_logits = net_D(torch.tensor(x).permute(0, 3, 1, 2)).reshape(8, 1)
    np.testing.assert_allclose(theirs_logits.detach().numpy(), np.asarray(logits), rtol=1e-5, atol=1e-6)


def test_the_books_dcgan_updates_are_dlruns(key):
    """Two steps of dlrun's two-part step against the book's `update_D` and `update_G` with
    Adam(lr 0.005, betas (0.5, 0.999)): the same losses, and the same moves of the weights after
    each step (a wrong beta, learning rate or layer moves them by about the learning rate)."""
    torch = pytest.importorskip("torch")
    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.dcgan import dcgan
    from dlrun.core.training.optimizers import build_optimizer
    from dlrun.core.training.parts import PartsOptimizer, make_parts_step
    from dlrun.core.training.state import Arrays, TrainState

    ref = benchmark_module("recsys_gan_reference")
    cfg = load_config(CONFIGS / "dcgan_cpu.yaml", TINY_DCGAN)
    shape = (16, 16, 1)
    gan = dcgan(cfg.model, BatchSpec(shape, 1))
    params, model_state = gan.init(key)
    optimizer = PartsOptimizer({part: build_optimizer(cfg.optimizers[part], 1, 1) for part in ("discriminator", "generator")})
    step = jax.jit(make_parts_step(gan.updates, optimizer))
    state = TrainState(params, optimizer.init(params), model_state, jnp.int32(0))

    net_G, net_D = ref.dcgan_nets(cfg.model, shape)
    copy_dcgan(torch, net_G, net_D, params)
    loss = torch.nn.BCEWithLogitsLoss()
    trainer_D = ref.adam(net_D.parameters(), cfg.optimizers["discriminator"])
    trainer_G = ref.adam(net_G.parameters(), cfg.optimizers["generator"])
    rng = np.random.default_rng(0)
    for i in range(2):
        X = rng.uniform(-1, 1, (8, *shape)).astype(np.float32)
        step_key = jax.random.fold_in(key, i)
        state, metrics = step(state, Arrays(jnp.asarray(X), None), step_key)
        Z = torch.tensor(np.asarray(jax.random.normal(step_key, (8, cfg.model.latent_dim)))).reshape(8, -1, 1, 1)  # dlrun's noise
        loss_D = ref.update_D(torch.tensor(X).permute(0, 3, 1, 2), Z, net_D, net_G, loss, trainer_D)
        loss_G = ref.update_G(Z, net_D, net_G, loss, trainer_G)
        assert loss_D.item() == pytest.approx(float(metrics["loss_D"]), rel=1e-5)
        assert loss_G.item() == pytest.approx(float(metrics["loss_G"]), rel=1e-5)
        assert_dcgan_moves(net_G, net_D, state.params, params)


def test_the_dcgan_reference_trains_dlruns_epoch(fake_fmnist_dir):
    """run_dcgan at a tiny size on dlrun's loader's images: one warm-up and one timed epoch of
    dlrun's whole batches, both losses finite."""
    pytest.importorskip("torch")
    from dlrun.core.config import load_config
    from dlrun.core.data import load_dataset
    from dlrun.core.data.sampling import steps_per_epoch

    ref = benchmark_module("recsys_gan_reference")
    cfg = load_config(CONFIGS / "dcgan_cpu.yaml", [*TINY_DCGAN, f"data.dir={fake_fmnist_dir}", "data.size=16",
                                                   "data.num_train=44", "data.batch_size=8", "trainer.progress=none"])
    data = load_dataset(cfg.data, cfg.seed)
    out = ref.run_dcgan(cfg, data, 1)
    assert len(out["epoch_seconds"]) == 1
    assert out["examples_trained"] == steps_per_epoch(data.sampling, data.num_train, cfg.data.batch_size) * 8 == 40
    assert 0 < out["train_loss"] < 5 and 0 < out["train_loss_G"] < 10
