"""Chapter 16's models, losses and metrics (D2L 16.3-16.10) against numpy ports of the book's
forward passes and of its `hit_and_auc`; the negative sampler; the data sets a config makes;
the ml-100k and click-through files through their configs; matrix factorisation at the noise
floor; every generated-data config end to end; and `dlrun predict --user`."""

import csv
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import Config, load_config
from dlrun.core.config.recsys import AutoRecModel, CaserModel, DeepFMModel, FMModel, MFModel, NeuMFModel
from dlrun.core.data import load_dataset
from dlrun.core.data.ctr import write_generated_ctr
from dlrun.core.data.recsys import lowrank_ratings
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.losses import (
    LOSSES,
    binary_cross_entropy,
    bpr,
    default_metrics,
    hinge,
    hit_rate,
    masked_squared_error,
    observed,
    ranking_auc,
)
from dlrun.core.nn.model import Model
from dlrun.core.nn.recsys import RECOMMENDERS, sample_negatives
from dlrun.core.training.inference import load_run, predict, recommend
from dlrun.core.training.state import Arrays
from dlrun.core.training.steps import make_eval_fn, pad_for_eval
from dlrun.core.training.train import train

from .conftest import CONFIGS

runner = CliRunner()


def randomised(params, seed=0, scale=0.5):
    """Every leaf of `params` replaced by N(0, scale^2) draws, so that biases are not zero."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(0.0, scale, np.shape(a)), jnp.float32), params)


def np64(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), jax.device_get(tree))


def relu(x):
    return np.maximum(x, 0.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def build(model_cfg, spec, seed=0):
    """The model's `apply` (jitted, `train` static), random values in the shapes its `init` gives
    (so that biases are not zero), and its state with every dropout rate one half."""
    model = RECOMMENDERS[model_cfg.name](model_cfg, spec)
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(seed))
    state = jax.tree_util.tree_map(lambda s: jnp.full(s.shape, 0.5, s.dtype), state)
    apply = jax.jit(model.apply, static_argnames="train")
    return apply, randomised(params, seed), state


ID_SPEC = BatchSpec({"user": (), "item": ()}, 1, id_counts={"user": 5, "item": 7})
USERS = np.array([0, 4, 2, 2, 1, 3], np.int32)
ITEMS = np.array([6, 0, 3, 5, 5, 1], np.int32)
NEGS = np.array([2, 2, 0, 6, 4, 3], np.int32)


# --- the models against numpy ports of the book's forward passes ---

def test_mf_is_the_dot_product_plus_both_biases():
    apply, params, state = build(MFModel(num_factors=3), ID_SPEC)
    out, _ = apply(params, state, {"user": USERS, "item": ITEMS})
    p = np64(params)
    expected = [p["P"]["w"][u] @ p["Q"]["w"][i] + p["user_bias"]["w"][u, 0] + p["item_bias"]["w"][i, 0]
                for u, i in zip(USERS, ITEMS)]
    assert out.shape == (len(USERS),)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def np_fm(p, x):
    """The book's FM logit by brute force: linear_layer(fc(x).sum(1)) + sum_{i<j} <v_xi, v_xj>."""
    out = []
    for row in x:
        linear = p["linear"]["w"][0, 0] * sum(p["fc"]["w"][f, 0] for f in row) + p["linear"]["b"][0]
        pairs = sum(p["embedding"]["w"][row[i]] @ p["embedding"]["w"][row[j]]
                    for i in range(len(row)) for j in range(i + 1, len(row)))
        out.append(linear + pairs)
    return np.array(out)


FIELDS, FEATURES = 5, 23
CTR_X = np.random.default_rng(3).integers(0, FEATURES, (6, FIELDS)).astype(np.int32)  # repeated ids within a row too
CTR_SPEC = BatchSpec((FIELDS,), 1, id_counts={"x": FEATURES})


def test_fm_logit_is_the_linear_term_plus_every_pair_of_fields():
    apply, params, state = build(FMModel(num_factors=4), CTR_SPEC)
    out, _ = apply(params, state, CTR_X)
    assert out.shape == (len(CTR_X),)
    np.testing.assert_allclose(out, np_fm(np64(params), CTR_X), rtol=1e-5, atol=1e-5)


def test_deepfm_is_the_fm_plus_an_mlp_on_the_flattened_embeddings():
    apply, params, state = build(DeepFMModel(num_factors=4, hidden=(6, 3), dropout=0.5), CTR_SPEC)
    out, _ = apply(params, state, CTR_X, train=False)
    p = np64(params)
    h = p["embedding"]["w"][CTR_X].reshape(len(CTR_X), -1)  # (batch, fields * k), field by field
    for layer in ("dense0", "dense1"):
        h = relu(h @ p["mlp"]["serial0"][layer]["w"] + p["mlp"]["serial0"][layer]["b"])
    deep = (h @ p["mlp"]["dense0"]["w"] + p["mlp"]["dense0"]["b"])[:, 0]
    np.testing.assert_allclose(out, np_fm(p, CTR_X) + deep, rtol=1e-5, atol=1e-5)
    trained, _ = apply(params, state, CTR_X, train=True, key=jax.random.PRNGKey(1))
    assert not np.allclose(trained, out)  # dropout acts in training only


def np_neumf(p, users, items):
    """The book's NeuMF: sigmoid(w . [P_u * Q_i, MLP([U_u, V_i])]), no bias on the last unit."""
    h = np.concatenate([p["U"]["w"][users], p["V"]["w"][items]], axis=1)
    for layer in ("dense0", "dense1"):
        h = relu(h @ p["mlp"][layer]["w"] + p["mlp"][layer]["b"])
    gmf = p["P"]["w"][users] * p["Q"]["w"][items]
    return sigmoid(np.concatenate([gmf, h], axis=1) @ p["head"]["w"])[:, 0]


def test_neumf_scores_a_pair_as_the_book_and_as_its_all_items_evaluation():
    apply, params, state = build(NeuMFModel(num_factors=3, hidden=(4, 3)), ID_SPEC)
    pairs, _ = apply(params, state, {"user": USERS, "item": ITEMS, "neg": NEGS}, train=True, key=jax.random.PRNGKey(0))
    every, _ = apply(params, state, {"user": USERS})
    rows = np.arange(len(USERS))
    assert set(pairs) == {"pos", "neg"} and every.shape == (len(USERS), 7)
    np.testing.assert_allclose(pairs["pos"], np.asarray(every)[rows, ITEMS], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pairs["neg"], np.asarray(every)[rows, NEGS], rtol=1e-5, atol=1e-6)
    p = np64(params)
    np.testing.assert_allclose(pairs["pos"], np_neumf(p, USERS, ITEMS), rtol=1e-5, atol=1e-6)
    grid_users, grid_items = np.repeat(USERS, 7), np.tile(np.arange(7), len(USERS))
    np.testing.assert_allclose(every, np_neumf(p, grid_users, grid_items).reshape(len(USERS), 7), rtol=1e-5, atol=1e-6)


def np_caser_features(p, users, seq):
    """[z, P_u] of the book's Caser, written from its layers: Conv2D(d', (L, 1)) and, for h = 1..L,
    Conv2D(d, (h, k)) with ReLU and a max over the L - h + 1 positions; dense + ReLU to z.
    The vertical outputs are flattened factor by factor (index j * d' + c) as the model's dense
    layer reads them (the book's reshape goes channel by channel: a permutation its learned
    weights absorb)."""
    e = p["Q"]["w"][seq]  # (b, L, k)
    b, L, k = e.shape
    wv, bv = p["conv_v"]["w"], p["conv_v"]["b"]  # (L, d'), (d',)
    d_prime = wv.shape[1]
    vertical = np.zeros((b, k, d_prime))
    for n in range(b):
        for j in range(k):
            for c in range(d_prime):
                vertical[n, j, c] = sum(e[n, row, j] * wv[row, c] for row in range(L)) + bv[c]
    horizontal = []
    for h in range(1, L + 1):
        w, bias = p["conv_h"][h - 1]["w"], p["conv_h"][h - 1]["b"]  # (h, k, d), (d,)
        d = w.shape[2]
        pooled = np.full((b, d), -np.inf)
        for n in range(b):
            for t in range(L - h + 1):
                for c in range(d):
                    value = sum(e[n, t + s, j] * w[s, j, c] for s in range(h) for j in range(k)) + bias[c]
                    pooled[n, c] = max(pooled[n, c], relu(value))
        horizontal.append(pooled)
    out = np.concatenate([vertical.reshape(b, -1), *horizontal], axis=1)
    z = relu(out @ p["fc"]["w"] + p["fc"]["b"])
    return np.concatenate([z, p["P"]["w"][users]], axis=1)


def test_caser_convolutions_and_score_match_the_books_definition():
    L = 3
    spec = BatchSpec({"user": (), "item": (), "seq": (L,)}, 1, id_counts={"user": 5, "item": 7, "seq": 7})
    apply, params, state = build(CaserModel(num_factors=3, d=2, d_prime=2, dropout=0.5), spec)
    seq = np.random.default_rng(1).integers(0, 7, (len(USERS), L)).astype(np.int32)
    pairs, _ = apply(params, state, {"user": USERS, "seq": seq, "item": ITEMS, "neg": NEGS})
    every, _ = apply(params, state, {"user": USERS, "seq": seq})
    p = np64(params)
    f = np_caser_features(p, USERS, seq)
    expected = f @ p["Q_prime"]["w"].T + p["b"]["w"][:, 0]  # [z, p_u] . q'_i + b_i
    assert every.shape == (len(USERS), 7)
    np.testing.assert_allclose(every, expected, rtol=1e-4, atol=1e-5)
    rows = np.arange(len(USERS))
    np.testing.assert_allclose(pairs["pos"], np.asarray(every)[rows, ITEMS], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pairs["neg"], np.asarray(every)[rows, NEGS], rtol=1e-5, atol=1e-5)


def test_autorec_reconstructs_an_items_ratings_through_a_sigmoid_layer():
    users = 9
    apply, params, state = build(AutoRecModel(hidden=4, dropout=0.5), BatchSpec((users,), users))
    x = np.random.default_rng(2).integers(0, 6, (5, users)).astype(np.float32)  # 0: unrated
    out, _ = apply(params, state, x, train=False)
    p = np64(params)
    hidden = sigmoid(x @ p["dense0"]["w"] + p["dense0"]["b"])
    assert out.shape == (5, users)
    np.testing.assert_allclose(out, hidden @ p["dense1"]["w"] + p["dense1"]["b"], rtol=1e-5, atol=1e-5)
    trained, _ = apply(params, state, x, train=True, key=jax.random.PRNGKey(1))
    assert trained.shape == (5, users) and not np.allclose(trained, out)


# --- losses against numpy, and the RMSE of a padded split ---

def test_pairwise_losses_against_numpy():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0, 3, 50).astype(np.float32), rng.normal(0, 3, 50).astype(np.float32)
    scores, d = {"pos": pos, "neg": neg}, pos.astype(np.float64) - neg
    np.testing.assert_allclose(bpr(scores, None), np.logaddexp(0, -d), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hinge(scores, None), np.maximum(0, 1 - d), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hinge(scores, None, margin=0.3), np.maximum(0, 0.3 - d), rtol=1e-5, atol=1e-6)


def test_binary_cross_entropy_against_numpy_and_stable_at_large_logits():
    z = np.array([-100.0, -3.0, -0.5, 0.0, 0.7, 4.0, 100.0, 100.0, -100.0], np.float32)
    y = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0], np.float32)
    expected = np.logaddexp(0, z.astype(np.float64)) - y * z  # -y log s(z) - (1 - y) log(1 - s(z))
    out = np.asarray(binary_cross_entropy(z[:, None], y))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert out[0] == pytest.approx(100.0) and out[6] == pytest.approx(100.0) and out[7] < 1e-30


def test_masked_squared_error_counts_the_known_ratings_only():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 6, (7, 11)).astype(np.float32)
    pred = rng.normal(3, 1, (7, 11)).astype(np.float32)
    known = target != 0
    np.testing.assert_allclose(masked_squared_error(pred, target), 0.5 * ((pred - target) ** 2 * known).sum(1), rtol=1e-5)
    np.testing.assert_array_equal(observed(target), known.sum(1))


def identity_model():
    return Model(lambda key: ({}, {}), lambda params, state, x, *, train=False, key=None: (x, state), ())


@pytest.mark.parametrize("loss_name", ["squared_error", "masked_squared_error"])
def test_rmse_of_a_padded_split_is_over_its_real_observed_entries(loss_name):
    rng = np.random.default_rng(2)
    if loss_name == "squared_error":  # one rating per example
        y = rng.integers(1, 6, 37).astype(np.float32)
        pred = (y + rng.normal(0, 0.8, 37)).astype(np.float32)
        known = np.ones_like(y, bool)
    else:  # an item's ratings by 6 users, most unknown; a row may hold none
        y = (rng.integers(1, 6, (37, 6)) * (rng.uniform(size=(37, 6)) < 0.3)).astype(np.float32)
        pred = rng.normal(3, 1, (37, 6)).astype(np.float32)
        known = y != 0
    metrics = default_metrics(LOSSES[loss_name], ("loss", "rmse"))
    batches, mask = pad_for_eval(Arrays(pred, y), 8)  # 40 rows, 3 of them padding
    out = jax.jit(make_eval_fn(identity_model(), metrics))({}, {}, batches, mask)
    err = (pred.astype(np.float64) - y)[known]
    assert float(out["rmse"]) == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-5)
    assert float(out["loss"]) == pytest.approx(0.5 * np.mean(err**2), rel=1e-5)


# --- the hit rate and AUC against the book's hit_and_auc ---

def book_hit_and_auc(rankedlist, test_matrix, k):
    """D2L 16.6 (neumf.md), as printed."""
    hits_k = [(idx, val) for idx, val in enumerate(rankedlist[:k]) if val in set(test_matrix)]
    hits_all = [(idx, val) for idx, val in enumerate(rankedlist) if val in set(test_matrix)]
    max = len(rankedlist) - 1
    auc = 1.0 * (max - hits_all[0][0]) / max if len(hits_all) > 0 else 0
    return len(hits_k), auc


def book_metrics(scores, seen, item, k):
    """The book's hit and AUC for one user over a ranked list of the candidates (the unseen items and
    the held-out one). A tie is broken against the held-out item for the hit; the AUC is the mean of
    the two ways of breaking its ties."""
    candidates = [i for i in range(len(scores)) if not seen[i] or i == item]
    ranked = {late: sorted(candidates, key=lambda i: (-scores[i], (i == item) == late)) for late in (True, False)}
    hit, auc_late = book_hit_and_auc(ranked[True], [item], k)
    _, auc_early = book_hit_and_auc(ranked[False], [item], k)
    return hit, (auc_late + auc_early) / 2


# both metrics in one program per shape (top_k may be traced: it is only compared with)
ranked = jax.jit(lambda scores, target, k: (hit_rate(scores, target, top_k=k), ranking_auc(scores, target)))


@pytest.mark.parametrize("ties", [False, True])
def test_hit_rate_and_auc_match_the_books_ranked_list(ties):
    rng = np.random.default_rng(4 + ties)
    batch, items, k = 64, 25, 5
    scores = rng.integers(0, 6, (batch, items)).astype(np.float32) if ties else rng.normal(size=(batch, items)).astype(np.float32)
    seen = rng.uniform(size=(batch, items)) < 0.4
    item = rng.integers(0, items, batch)
    seen[np.arange(batch)[:16], item[:16]] = True  # a held-out item the user also has in training
    expected = np.array([book_metrics(scores[b], seen[b], item[b], k) for b in range(batch)])
    hits, aucs = ranked(scores, {"item": item, "seen": seen}, k)
    np.testing.assert_array_equal(hits, expected[:, 0])
    np.testing.assert_allclose(aucs, expected[:, 1], rtol=1e-6)
    assert 0 < expected[:, 0].mean() < 1


def test_a_tie_counts_against_the_hit_and_one_half_in_the_auc():
    scores = np.array([[0.9, 0.5, 0.5, 0.1, 0.5]], np.float32)
    target = {"item": np.array([1]), "seen": np.array([[False, False, False, False, True]])}
    # candidates beside item 1: item 0 above, item 2 tied, item 3 below (item 4 is seen: not a candidate)
    assert float(ranked(scores, target, 2)[0][0]) == 0.0  # 1 above + 1 tie: not within the top 2
    hit, auc = ranked(scores, target, 3)
    assert float(hit[0]) == 1.0 and float(auc[0]) == pytest.approx((3 - 1 - 0.5) / 3)
    scores[0, 2] = 0.4  # no tie now: item 2 below
    hit, auc = ranked(scores, target, 2)
    assert float(hit[0]) == 1.0 and float(auc[0]) == pytest.approx(2 / 3)


# --- negative sampling ---

negatives = jax.jit(sample_negatives)  # one program per shape rather than one per operation


def seen_matrix_with(counts, items, seed):
    rng = np.random.default_rng(seed)
    seen = np.zeros((len(counts), items), bool)
    for u, c in enumerate(counts):
        seen[u, rng.choice(items, c, replace=False)] = True
    return seen


def test_a_negative_is_never_an_item_the_user_has_seen():
    items = 40
    seen = seen_matrix_with(np.random.default_rng(0).integers(0, 13, 50), items, 1)  # each user saw at most 30%
    users = jnp.asarray(np.tile(np.arange(50), 40), jnp.int32)
    for k in range(5):
        neg = np.asarray(negatives(jnp.asarray(seen), users, jax.random.PRNGKey(k)))
        assert neg.min() >= 0 and neg.max() < items
        assert not seen[np.asarray(users), neg].any()


def test_a_dense_users_negative_is_never_an_item_the_user_has_seen():
    seen = np.zeros((1, 32), bool)
    seen[0, :30] = True  # two items left unseen
    neg = np.asarray(negatives(jnp.asarray(seen), jnp.zeros(1000, jnp.int32), jax.random.PRNGKey(0)))
    assert not seen[0, neg].any()


def test_negatives_are_uniform_over_the_unseen_items_and_fixed_by_the_key():
    items, draws = 30, 6000
    seen = seen_matrix_with([10], items, 2)
    users = jnp.zeros(draws, jnp.int32)
    neg = np.asarray(negatives(jnp.asarray(seen), users, jax.random.PRNGKey(3)))
    counts = np.bincount(neg, minlength=items)
    assert counts[seen[0]].sum() == 0
    expected = draws / (~seen[0]).sum()
    chi2 = float(np.sum((counts[~seen[0]] - expected) ** 2 / expected))
    assert chi2 < 50  # 19 degrees of freedom: P(chi2 > 50) is about 1e-4
    again = np.asarray(negatives(jnp.asarray(seen), users, jax.random.PRNGKey(3)))
    other = np.asarray(negatives(jnp.asarray(seen), users, jax.random.PRNGKey(4)))
    np.testing.assert_array_equal(neg, again)
    assert (neg != other).mean() > 0.5


# --- the data sets a config makes ---

TINY = {"num_users": 30, "num_items": 40, "density": 0.3, "min_per_user": 6}
TINY_SETS = [f"data.lowrank.{k}={v}" for k, v in TINY.items()]


def generated(cfg):
    """The interactions a lowrank data section draws (with the run's seed)."""
    g = cfg.data.lowrank
    inter, _ = lowrank_ratings(g.num_users, g.num_items, g.rank, g.density, g.noise, cfg.seed, g.min_per_user, g.exposure)
    return inter


def test_a_ranking_set_with_sequences_holds_each_users_training_items_and_last_three():
    cfg = load_config(CONFIGS / "caser_lowrank.yaml", [*TINY_SETS, "data.seq_len=3"])
    data = load_dataset(cfg.data, cfg.seed)
    inter = generated(cfg)
    by_user = {}
    for u, i, t in zip(inter.user, inter.item, inter.time):
        by_user.setdefault(int(u), []).append((int(t), int(i)))
    users = np.asarray(data.x_val["user"])
    assert sorted(users.tolist()) == sorted(by_user)
    for row, u in enumerate(users):
        history = [i for _, i in sorted(by_user[int(u)])]
        held_out, training = history[-1], history[:-1]
        assert data.y_val["item"][row] == held_out
        assert set(np.flatnonzero(data.y_val["seen"][row])) == set(training)
        assert data.x_val["seq"][row].tolist() == training[-3:]
    assert data.negatives.shape == (30, 40) and data.negatives.sum() == len(inter.user) - len(users)


def test_an_item_vector_set_holds_the_training_matrix_in_and_the_held_out_one_to_score():
    cfg = load_config(CONFIGS / "autorec_lowrank.yaml", TINY_SETS)
    data = load_dataset(cfg.data, cfg.seed)
    inter = generated(cfg)
    full = np.zeros((40, 30), np.float32)
    full[inter.item, inter.user] = inter.rating
    train_m, test_m = np.asarray(data.x_val), np.asarray(data.y_val)
    assert train_m.shape == test_m.shape == (40, 30)
    np.testing.assert_array_equal(train_m, data.x_train)
    assert not ((train_m != 0) & (test_m != 0)).any()
    np.testing.assert_array_equal(train_m + test_m, full)
    assert 0.05 < (test_m != 0).sum() / len(inter.user) < 0.15  # test_ratio 0.1


# --- shared runs: every generated-data config at a tiny size ---

SHRINK = {
    "mf_lowrank": [*TINY_SETS, "data.batch_size=32"],
    "autorec_lowrank": [*TINY_SETS, "data.batch_size=8", "model.hidden=16"],
    "neumf_lowrank": [*TINY_SETS, "data.batch_size=32", "data.top_k=5", "model.hidden=[4]"],
    "caser_lowrank": [*TINY_SETS, "data.batch_size=32", "data.top_k=5", "data.seq_len=2", "model.d=2", "model.d_prime=2"],
    "fm_generated": ["data.num_train=600", "data.num_val=200", "data.batch_size=64"],
    "deepfm_generated": ["data.num_train=600", "data.num_val=200", "data.batch_size=64", "model.hidden=[8]"],
}
EPOCHS = 3  # a ranking loss starts at log 2 and leaves it slowly: a third epoch makes its fall clear
COMMON = [f"trainer.epochs={EPOCHS}", "trainer.progress=none"]
THROUGH_CLI = {"mf_lowrank", "neumf_lowrank"}  # trained by `dlrun train`, for `dlrun predict` below


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> its run directory, trained once for the module."""
    done: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("recsys-runs")

    def get(name: str) -> Path:
        if name not in done:
            out, sets = root / name, [*SHRINK[name], *COMMON]
            if name in THROUGH_CLI:
                result = runner.invoke(app, ["train", str(CONFIGS / f"{name}.yaml"), "--out", str(out),
                                             *[a for s in sets for a in ("--set", s)]])
                assert result.exit_code == 0, result.output
            else:
                train(load_config(CONFIGS / f"{name}.yaml", sets), out, plot=False)
            done[name] = out
        return done[name]

    return get


def read_run(run_dir: Path):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((run_dir / "summary.json").read_text())


REPORTED = {"rating": ["train/loss", "val/loss", "val/rmse"], "ranking": ["train/loss", "val/hit_rate", "val/auc"],
            "ctr": ["train/loss", "train/acc", "val/loss", "val/acc"]}


# --- each generated-data config end to end ---

@pytest.mark.parametrize("name", list(SHRINK))
def test_every_generated_data_config_trains_and_reports(runs, name):
    rows, summary = read_run(runs(name))
    cfg = load_config(CONFIGS / f"{name}.yaml")
    kind = "ctr" if cfg.data.name == "ctr" else "ranking" if cfg.data.name == "movielens_ranking" else "rating"
    assert len(rows) == EPOCHS and set(REPORTED[kind]) <= set(rows[0]), list(rows[0])
    for column in REPORTED[kind]:
        values = [float(r[column]) for r in rows]
        assert np.all(np.isfinite(values)), (column, values)
        assert summary[column] == pytest.approx(values[-1], rel=1e-6)
    assert float(rows[-1]["train/loss"]) < float(rows[0]["train/loss"])
    if kind == "ctr":
        assert 0 < summary["val/loss_best"] < np.log(2) and 0.5 < summary["val/auc_best"] <= 1
        assert 0 <= summary["val/auc"] <= 1
    else:
        assert summary["noise_floor"] == cfg.data.lowrank.noise
    if kind == "ranking":
        assert all(0 <= float(r[c]) <= 1 for r in rows for c in ("val/hit_rate", "val/auc"))


def test_the_hinge_loss_trains_a_ranker_too(tmp_path):
    """D2L 16.5's other pairwise loss, max(0, 1 - (s_pos - s_neg)), in the same loop as BPR."""
    cfg = load_config(CONFIGS / "neumf_lowrank.yaml", [*SHRINK["neumf_lowrank"], *COMMON, "loss.name=hinge"])
    rows = train(cfg, tmp_path / "run", plot=False).rows
    assert rows[-1]["train/loss"] < rows[0]["train/loss"] <= 1.0 + 1e-6  # it starts at the margin, scores ~equal
    assert 0 <= rows[-1]["val/auc"] <= 1


# --- the ml-100k and click-through readers through the book's configs ---

def write_udata(path: Path, inter) -> Path:
    """ml-100k's u.data: user<TAB>item<TAB>rating<TAB>timestamp, ids from 1."""
    path.write_text("".join(f"{u + 1}\t{i + 1}\t{float(r)!r}\t{t}\n"
                            for u, i, r, t in zip(inter.user, inter.item, inter.rating, inter.time)))
    return path


@pytest.mark.parametrize("book, generated_twin", [("mf", "mf_lowrank"), ("neumf", "neumf_lowrank")])
def test_a_udata_file_trains_the_books_config(tmp_path, runs, book, generated_twin):
    """The file holds the interactions the twin config generates, and the book's config runs with
    the twin's sizes and optimizer: the two runs share their compiled programs and must agree."""
    twin = load_config(CONFIGS / f"{generated_twin}.yaml", [*SHRINK[generated_twin], *COMMON])
    inter = generated(twin)
    assert inter.user.max() == 29 and inter.item.max() == 39 and np.bincount(inter.user).min() >= 6
    path = write_udata(tmp_path / "u.data", inter)
    assert path.read_text().splitlines()[0].count("\t") == 3
    like_twin = [f"data.batch_size={twin.data.batch_size}", f"optimizer.lr={twin.optimizer.lr}",
                 f"optimizer.weight_decay={twin.optimizer.weight_decay}"]
    if book == "neumf":
        like_twin += [f"data.top_k={twin.data.top_k}", f"model.hidden={list(twin.model.hidden)}"]
    cfg = load_config(CONFIGS / f"{book}.yaml", [f"data.file={path}", *like_twin, *COMMON])
    assert (cfg.model, cfg.loss, cfg.optimizer) == (twin.model, twin.loss, twin.optimizer), "the configs drifted apart"
    summary = train(cfg, tmp_path / "run", plot=False).summary
    metrics = ["val/rmse"] if book == "mf" else ["val/hit_rate", "val/auc"]
    _, twin_summary = read_run(runs(generated_twin))
    for m in metrics:
        assert np.isfinite(summary[m])
        assert summary[m] == pytest.approx(twin_summary[m], rel=1e-5)
    assert "noise_floor" not in summary


def np_auc(scores, labels):
    """P(a positive scores above a negative), ties one half, over every pair."""
    pos, neg = scores[labels > 0.5][:, None], scores[labels < 0.5][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


@pytest.fixture(scope="module")
def ctr_run(tmp_path_factory):
    """configs/fm.yaml on train.csv and test.csv files in the book's format (those fm_generated draws)."""
    root = tmp_path_factory.mktemp("ctr")
    write_generated_ctr(root / "train.csv", 600, 0)
    write_generated_ctr(root / "test.csv", 200, 1)
    cfg = load_config(CONFIGS / "fm.yaml", [f"data.file={root / 'train.csv'}", "data.batch_size=64", *COMMON])
    return train(cfg, root / "run", plot=False), root / "run"


def test_a_ctr_file_trains_the_books_fm_and_reports_the_auc_of_its_predictions(ctr_run, runs):
    result, run_dir = ctr_run
    lines = (run_dir.parent / "test.csv").read_text().splitlines()
    assert len(lines) == 200 and all(len(line.split("\t")) == 35 for line in lines)
    run = load_run(run_dir)
    logits = predict(run.setup.model, run.state.params, run.state.model_state, run.data.x_val)
    labels = np.array([float(line.split("\t")[0]) for line in lines])
    assert logits.shape == (200,)
    assert result.summary["val/auc"] == pytest.approx(np_auc(logits.astype(np.float64), labels), abs=1e-9)
    assert result.summary["val/auc"] == pytest.approx(read_run(runs("fm_generated"))[1]["val/auc"], rel=1e-6)


# --- matrix factorisation at the noise floor; what a trained recommender reports and recommends ---

def test_matrix_factorisation_lands_near_the_noise_floor(tmp_path):
    """Ratings from a known rank-2 model plus N(0, 0.5^2) noise: no model beats an RMSE of 0.5 on
    held-out ratings in expectation; MF of the same rank trained with Adam lands within 5% of it
    (1.033 x at seed 0; the estimation error of 2 x 300 x 3 parameters from 65,000 ratings
    accounts for most of the rest)."""
    cfg = Config.model_validate({
        "name": "mf_floor",
        "data": {"name": "movielens", "source": "lowrank", "batch_size": 1024,
                 "lowrank": {"num_users": 300, "num_items": 300, "rank": 2, "density": 0.8, "noise": 0.5}},
        "model": {"name": "mf", "num_factors": 2, "init_scale": 0.1},
        "loss": {"name": "squared_error"},
        "optimizer": {"name": "adam", "lr": 0.02},
        "trainer": {"epochs": 20, "progress": "none"},
    })
    summary = train(cfg, tmp_path / "run", plot=False).summary
    assert summary["noise_floor"] == 0.5
    assert summary["val/rmse"] <= 1.05 * 0.5


@pytest.mark.parametrize("name", ["neumf_lowrank", "caser_lowrank"])
def test_a_ranking_runs_hit_rate_and_auc_are_the_books_over_its_own_scores(runs, name):
    """The reported val/hit_rate and val/auc: the book's hit_and_auc of each held-out item over the
    checkpoint's scores of every item, averaged over the users (the last epoch is the checkpoint)."""
    run_dir = runs(name)
    run = load_run(run_dir)
    scores = predict(run.setup.model, run.state.params, run.state.model_state, run.data.x_val)
    y = run.data.y_val
    assert scores.shape == (len(y["item"]), 40)
    per_user = np.array([book_metrics(scores[n], y["seen"][n], y["item"][n], run.cfg.data.top_k) for n in range(len(scores))])
    _, summary = read_run(run_dir)
    assert summary["val/hit_rate"] == pytest.approx(per_user[:, 0].mean(), abs=1e-6)
    assert summary["val/auc"] == pytest.approx(per_user[:, 1].mean(), abs=1e-5)


@pytest.mark.parametrize("name", ["autorec_lowrank", "caser_lowrank"])
def test_recommend_lists_the_best_scored_unseen_items(runs, name):
    run = load_run(runs(name))
    user = 3
    if name == "autorec_lowrank":  # an item's column of ratings, reconstructed: the user's column of every item
        seen = np.asarray(run.data.x_train)[:, user - 1] != 0
        scores = predict(run.setup.model, run.state.params, run.state.model_state, run.data.x_train)[:, user - 1]
    else:  # the user's held-out row: its last training items, every item scored
        row = int(np.flatnonzero(run.data.x_val["user"] == user - 1)[0])
        seen = np.asarray(run.data.y_val["seen"][row])
        x = {"user": np.array([user - 1], np.int32), "seq": run.data.x_val["seq"][row:row + 1]}
        scores = predict(run.setup.model, run.state.params, run.state.model_state, x)[0]
    items = recommend(run, user, 5)
    assert len(items) == 5 and not seen[[i - 1 for i, _ in items]].any()
    masked = np.where(seen, -np.inf, scores)
    assert [i for i, _ in items] == (np.argsort(-masked, kind="stable")[:5] + 1).tolist()
    np.testing.assert_allclose([s for _, s in items], masked[np.argsort(-masked, kind="stable")[:5]], rtol=1e-6)


# --- dlrun predict --user ---

def recommended(output: str) -> list[tuple[int, float]]:
    return [(int(m[1]), float(m[2])) for m in re.finditer(r"^\s+item\s+(\d+)\s+(\S+)$", output, re.M)]


def training_items(run_dir: Path, user: int) -> set[int]:
    """The items (numbered from 1) `user` (from 1) has in the run's training split."""
    cfg = load_config(run_dir / "config.yaml")
    data = load_dataset(cfg.data, cfg.seed)
    return {int(i) + 1 for i in data.x_train["item"][data.x_train["user"] == user - 1]}


def test_predict_recommends_a_rating_models_best_unseen_items(runs):
    run_dir = runs("mf_lowrank")
    result = runner.invoke(app, ["predict", str(run_dir), "--user", "3", "--top", "5"])
    assert result.exit_code == 0, result.output
    items = recommended(result.output)
    assert len(items) == 5
    seen = training_items(run_dir, 3)
    assert seen and not {i for i, _ in items} & seen
    # the same five from the checkpoint's tables: p_u . q_i + b_u + b_i, best first among the unseen
    p = np64(load_run(run_dir).state.params)
    scores = p["P"]["w"][2] @ p["Q"]["w"].T + p["user_bias"]["w"][2, 0] + p["item_bias"]["w"][:, 0]
    scores[[i - 1 for i in seen]] = -np.inf
    best = np.argsort(-scores, kind="stable")[:5] + 1
    assert [i for i, _ in items] == best.tolist()
    np.testing.assert_allclose([s for _, s in items], scores[best - 1], atol=1e-4)


def test_predict_ranks_a_ranking_models_unseen_items(runs):
    run_dir = runs("neumf_lowrank")
    result = runner.invoke(app, ["predict", str(run_dir), "--user", "3", "--top", "5"])
    assert result.exit_code == 0, result.output
    items = recommended(result.output)
    assert len(items) == 5 and len({i for i, _ in items}) == 5
    seen = training_items(run_dir, 3)
    assert seen and not {i for i, _ in items} & seen
    scores = [s for _, s in items]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("user", ["0", "100000"])
def test_predict_refuses_a_user_the_run_does_not_have(runs, user):
    result = runner.invoke(app, ["predict", str(runs("mf_lowrank")), "--user", user, "--top", "5"])
    assert result.exit_code == 2 and "--user" in result.output and "Traceback" not in result.output


def test_predict_says_nothing_of_items_for_a_user_it_refuses(runs):
    result = runner.invoke(app, ["predict", str(runs("mf_lowrank")), "--user", "100000", "--top", "5"])
    assert result.exit_code == 2
    assert "items with the highest" not in result.output


def test_predict_has_no_users_for_a_click_model(ctr_run):
    result = runner.invoke(app, ["predict", str(ctr_run[1]), "--user", "3"])
    assert result.exit_code == 2 and "click through run" in result.output and "nothing to do" in result.output
