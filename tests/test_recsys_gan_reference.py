"""The speed benchmark's PyTorch references of D2L 16.3 and 17.1 are the networks dlrun trains:
with dlrun's initial weights copied in, the book's `MF` gives dlrun's ratings, L2 loss,
gradients and Adam-with-weight-decay steps, and the book's `update_D`/`update_G` give dlrun's
two-part step (`core.training.parts`): the same losses and the same weights after each step
(benchmarks/recsys_gan_reference.py)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import CONFIGS
from .test_benchmarks import benchmark_module

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
