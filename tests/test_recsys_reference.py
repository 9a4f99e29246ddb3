"""The speed benchmark's PyTorch references of D2L 16.6, 16.7, 16.9 and 16.10 are the networks
dlrun trains: with dlrun's initial weights copied in, the book's NeuMF, Caser, FM and DeepFM have
dlrun's parameter count and give its scores (of training pairs and of every item) and logits,
and their BPR and binary cross-entropy steps under Adam, weight decay on the weights alone, give
dlrun's losses and weights (benchmarks/recsys_reference.py). Their negative sampler, hit rate
and AUCs are dlrun's, and each run_* trains dlrun's number of examples an epoch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import CONFIGS
from .test_benchmarks import benchmark_module
from .torch_weights import copy_linear

# tiny generated sets: 30 users and 40 items (120-270 training interactions), 300 click lines
TINY = {"neumf_lowrank": ["data.lowrank.num_users=30", "data.lowrank.num_items=40", "data.batch_size=32"],
        "caser_lowrank": ["data.lowrank.num_users=30", "data.lowrank.num_items=40", "data.batch_size=32"],
        "fm_generated": ["data.num_train=300", "data.num_val=100", "data.batch_size=64"],
        "deepfm_generated": ["data.num_train=300", "data.num_val=100", "data.batch_size=64"]}


def tiny(name: str, *overrides: str):
    from dlrun.core.config import load_config
    from dlrun.core.data import load_dataset

    cfg = load_config(CONFIGS / f"{name}.yaml", ["trainer.progress=none", *TINY[name], *overrides])
    return cfg, load_dataset(cfg.data, cfg.seed)


def dlrun_start(cfg, data):
    """dlrun's setup of `cfg` on `data` and its initial state, as `dlrun train` starts."""
    from dlrun.core.training.setup import build_setup, start_state

    setup = build_setup(cfg, data)
    state, keys = start_state(setup, jax.random.PRNGKey(cfg.seed))
    return setup, state, keys


def reference_net(ref, cfg, data):
    if cfg.model.name in ("neumf", "caser"):
        return ref.ranking_net(cfg.model, data.id_counts, data.x_train["seq"].shape[1] if "seq" in data.x_train else 0)
    return ref.ctr_net(cfg.model, data.id_counts["x"], data.x_train.shape[1])


def copy_params(torch, net, name: str, p) -> None:
    """dlrun's params of a neumf, caser, fm or deepfm into the reference's `net`."""
    t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731
    with torch.no_grad():
        if name == "neumf":
            for table in "PQUV":
                getattr(net, table).weight.copy_(t(p[table]["w"]))
            for i, layer in enumerate(net.mlp[::2]):
                copy_linear(torch, layer, p["mlp"][f"dense{i}"])
            net.prediction_layer[0].weight.copy_(t(p["head"]["w"]).T)
        elif name == "caser":
            for table in ("P", "Q", "Q_prime", "b"):
                getattr(net, table).weight.copy_(t(p[table]["w"]))
            net.conv_v.weight.copy_(t(p["conv_v"]["w"]).T[:, None, :, None])  # (L, d') -> (d', 1, L, 1)
            net.conv_v.bias.copy_(t(p["conv_v"]["b"]))
            for conv, q in zip(net.conv_h, p["conv_h"]):
                conv.weight.copy_(t(q["w"]).permute(2, 0, 1)[:, None])  # (h, k, d) -> (d, 1, h, k)
                conv.bias.copy_(t(q["b"]))
            # dlrun flattens the vertical convolution's (k, d') output, the book's (d', 1, k)
            w = np.asarray(p["fc"]["w"])
            d_prime, k = net.conv_v.out_channels, net.P.embedding_dim
            vertical = w[: d_prime * k].reshape(k, d_prime, -1).transpose(1, 0, 2).reshape(d_prime * k, -1)
            copy_linear(torch, net.fc[0], {"w": np.concatenate([vertical, w[d_prime * k :]]), "b": p["fc"]["b"]})
        else:
            net.embedding.weight.copy_(t(p["embedding"]["w"]))
            net.fc.weight.copy_(t(p["fc"]["w"]))
            copy_linear(torch, net.linear_layer, p["linear"])
            if name == "deepfm":
                hidden = [net.mlp[i] for i in range(0, len(net.mlp) - 1, 3)]
                for i, layer in enumerate(hidden):
                    copy_linear(torch, layer, p["mlp"]["serial0"][f"dense{i}"])
                copy_linear(torch, net.mlp[-1], p["mlp"]["dense0"])


def torch_params(net) -> list:
    return [w.detach().numpy().copy() for w in net.parameters()]


@pytest.mark.parametrize("name", list(TINY))
def test_the_books_recommenders_are_dlruns_networks(name):
    """The same parameter count and, with dlrun's weights, the same outputs: a ranker's scores of
    positive and negative items and of every item for each held-out user, a click model's logits."""
    torch = pytest.importorskip("torch")
    from dlrun.core.nn.params import count

    ref = benchmark_module("recsys_reference")
    # weights of 0.3, not the configs' 0.01, so that every layer moves the scores
    cfg, data = tiny(name, *(["model.init_scale=0.3"] if "lowrank" in name else []))
    setup, state, _ = dlrun_start(cfg, data)
    net = reference_net(ref, cfg, data).eval()
    assert sum(w.numel() for w in net.parameters()) == count(state.params)
    copy_params(torch, net, cfg.model.name, state.params)
    apply = jax.jit(lambda x: setup.model.apply(state.params, state.model_state, x, train=False)[0])

    def close(theirs, ours):
        np.testing.assert_allclose(theirs.detach().numpy(), np.asarray(ours), rtol=1e-5, atol=1e-6)

    rows = np.arange(16)
    if cfg.model.name in ("neumf", "caser"):
        x = {k: v[rows] for k, v in data.x_train.items()}
        neg = np.random.default_rng(0).integers(0, data.id_counts["item"], len(rows)).astype(np.int32)
        ours = apply({**{k: jnp.asarray(v) for k, v in x.items()}, "neg": jnp.asarray(neg)})
        pos, theirs_neg = net.pair_scores(ref.as_tensors(x), torch.tensor(neg, dtype=torch.int64))
        close(pos, ours["pos"])
        close(theirs_neg, ours["neg"])
        with torch.no_grad():
            close(net.all_scores(ref.as_tensors(data.x_val)), apply({k: jnp.asarray(v) for k, v in data.x_val.items()}))
    else:
        x = data.x_train[rows]
        close(net(torch.tensor(x, dtype=torch.int64)), apply(jnp.asarray(x)))


@pytest.mark.parametrize("name", ["neumf_lowrank", "caser_lowrank", "deepfm_generated"])
def test_the_books_recommender_steps_are_dlruns(name):
    """Two steps of dlrun's `train_step` (its negatives drawn with the step's key, given to the
    reference) against the book's loss, `backward` and Adam, dropout 0 and weight decay 0.1 so
    that the weights-only decay matters: the same losses and weights after each step (a missed
    decay or a misplaced layer moves weights by about the learning rate)."""
    torch = pytest.importorskip("torch")
    from dlrun.core.nn.models import pipeline_key
    from dlrun.core.nn.recsys import sample_negatives
    from dlrun.core.training.state import Arrays

    ref = benchmark_module("recsys_reference")
    overrides = ["optimizer.weight_decay=0.1"]
    overrides += ["model.init_scale=0.3"] if "lowrank" in name else []
    overrides += ["model.dropout=0"] if name != "neumf_lowrank" else []
    cfg, data = tiny(name, *overrides)
    setup, state, keys = dlrun_start(cfg, data)
    net = reference_net(ref, cfg, data)
    copy_params(torch, net, cfg.model.name, state.params)
    optimizer = ref.adam(net.parameters(), cfg.optimizer)
    step, negatives = jax.jit(setup.train_step), jax.jit(sample_negatives)
    first = lambda a: jnp.asarray(a[: setup.batch_size])  # noqa: E731
    batch = Arrays(jax.tree_util.tree_map(first, data.x_train), first(data.y_train))  # the first batch
    x = {k: torch.tensor(np.asarray(v), dtype=torch.int64) for k, v in batch.x.items()} if isinstance(batch.x, dict) \
        else torch.tensor(np.asarray(batch.x), dtype=torch.int64)
    for i in range(2):  # the second step: Adam's moments carried over, weight decay on moved weights
        key = jax.random.fold_in(keys["step"], i)
        state, metrics = step(state, batch, key)
        if cfg.model.name in ("neumf", "caser"):  # the negatives dlrun drew in this step
            neg = negatives(jnp.asarray(data.negatives), batch.x["user"], pipeline_key(key))
            loss = ref.bpr_loss(*net.pair_scores(x, torch.tensor(np.asarray(neg), dtype=torch.int64))).mean()
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), torch.tensor(np.asarray(batch.y)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert loss.item() == pytest.approx(float(metrics["loss"]), rel=1e-5)
        expected = reference_net(ref, cfg, data)  # dlrun's stepped params, laid out as the reference's
        copy_params(torch, expected, cfg.model.name, state.params)
        # Adam divides each gradient by its own size: an entry whose gradient cancels to near 0 takes
        # a step float32 cannot pin down, so the weights agree to 1e-4 of the learning rate
        for theirs, ours in zip(torch_params(net), torch_params(expected)):
            np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-4 * cfg.optimizer.lr)


def test_the_negatives_are_unseen_items_drawn_as_dlrun_draws_them():
    """Every negative is an item its user has not seen; a user who has seen all but one item gets
    that one (the exact draw when 16 candidates miss), the others uniform over their unseen ones."""
    torch = pytest.importorskip("torch")
    ref = benchmark_module("recsys_reference")
    torch.manual_seed(0)
    seen = torch.rand(4, 200) < 0.5
    seen[3] = True
    seen[3, 17] = False
    user = torch.tensor([0, 1, 2, 3] * 500)
    neg = ref.sample_negatives(seen, user)
    assert not seen[user, neg].any()
    assert (neg[user == 3] == 17).all()
    unseen_0 = int((~seen[0]).sum())
    assert len(torch.unique(neg[user == 0])) > 0.9 * unseen_0  # 500 draws over ~100 unseen items reach nearly all


def test_the_rankings_and_click_auc_are_dlruns():
    """hit_and_auc against dlrun's hit_rate and ranking_auc, and the click AUC against dlrun's
    exact AUC, on scores with ties."""
    torch = pytest.importorskip("torch")
    from dlrun.core.data.ctr import auc
    from dlrun.core.nn.losses import hit_rate, ranking_auc

    ref = benchmark_module("recsys_reference")
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 30, (50, 40)).astype(np.float32)  # many ties
    item, seen = rng.integers(0, 40, 50), rng.random((50, 40)) < 0.3
    target = {"item": jnp.asarray(item), "seen": jnp.asarray(seen)}
    hit, theirs_auc = ref.hit_and_auc(torch.tensor(scores), torch.tensor(item), torch.tensor(seen), 10)
    assert hit == pytest.approx(float(jnp.mean(hit_rate(jnp.asarray(scores), target, 10))), rel=1e-6)
    assert theirs_auc == pytest.approx(float(jnp.mean(ranking_auc(jnp.asarray(scores), target))), rel=1e-6)
    logits, labels = rng.integers(0, 20, 300).astype(np.float32), (rng.random(300) < 0.3).astype(np.float32)
    assert ref.auc(torch.tensor(logits), torch.tensor(labels)) == pytest.approx(auc(logits, labels), rel=1e-9)


@pytest.mark.parametrize("name", list(TINY))
def test_the_references_train_dlruns_epochs_and_report_their_figures(name):
    """Each run_* at a tiny size: one warm-up and one timed epoch of dlrun's number of examples
    (its whole batches), a finite loss, validation figures in range."""
    pytest.importorskip("torch")
    from dlrun.core.data.sampling import steps_per_epoch

    ref = benchmark_module("recsys_reference")
    cfg, data = tiny(name)
    run = {"neumf": ref.run_neumf, "caser": ref.run_caser, "fm": ref.run_fm, "deepfm": ref.run_deepfm}[cfg.model.name]
    out = run(cfg, data, 1)
    assert len(out["epoch_seconds"]) == 1 and out["compile_seconds"] == 0.0
    assert out["examples_trained"] == steps_per_epoch(data.sampling, data.num_train, cfg.data.batch_size) * cfg.data.batch_size
    if cfg.model.name in ("neumf", "caser"):
        assert 0.3 < out["train_loss"] < 1.0  # near ln 2 from near-constant scores
        assert 0 <= out["val_hit_rate"] <= 1 and 0 < out["val_auc"] < 1
    else:
        assert 0 < out["train_loss"] < 2 and 0 < out["val_loss"] < 2
        assert 0 < out["val_acc"] <= 1 and 0 < out["val_auc"] < 1
