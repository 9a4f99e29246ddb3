"""Recurrent cells and language models (D2L 9.4-10.4): every cell against a NumPy loop, the
fused formulation against the scratch one, hidden states carried across batches, the book's
parameter counts, the masked loss, and a language model that learns a string by heart."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.config import Config
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.combinators import recurrent, reset_carries
from dlrun.core.nn.init import normal_init
from dlrun.core.nn.losses import masked_cross_entropy
from dlrun.core.nn.models import build_model
from dlrun.core.nn.params import count as count_params
from dlrun.core.nn.rnn import GATES, fuse, fused_cell, gru_cell, lstm_cell, rnn_cell

CELLS = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def np_cell_run(kind, p, x):
    """The book's equations (D2L 9.4, 10.1, 10.2), step by step in float64 from a zero state."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    batch, steps, _ = x.shape
    hidden = p["w_hh"].shape[0] if kind != "lstm" else p["w_hi"].shape[0]
    h, c = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    out = []
    for t in range(steps):
        xt = x[:, t]
        lin = lambda g: xt @ p[f"w_x{g}"] + h @ p[f"w_h{g}"] + p[f"b_{g}"]  # noqa: E731
        if kind == "rnn":
            h = np.tanh(lin("h"))
        elif kind == "gru":
            z, r = sigmoid(lin("z")), sigmoid(lin("r"))
            h_tilde = np.tanh(xt @ p["w_xh"] + (r * h) @ p["w_hh"] + p["b_h"])
            h = z * h + (1 - z) * h_tilde
        else:
            i, f, o = sigmoid(lin("i")), sigmoid(lin("f")), sigmoid(lin("o"))
            c = f * c + i * np.tanh(lin("c"))
            h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_scratch_and_fused_cells_match_a_numpy_loop(kind, key):
    scratch = recurrent(CELLS[kind](5, normal_init(0.5), normal_init(0.3)))
    (steps, hidden), params, _ = scratch.init(key, (6, 3))
    assert (steps, hidden) == (6, 5)
    assert set(params) == {f"{w}{g}" for g in GATES[kind] for w in ("w_x", "w_h", "b_")}
    x = np.random.default_rng(1).normal(size=(4, 6, 3)).astype(np.float32)
    expected = np_cell_run(kind, params, x.astype(np.float64))
    y_scratch, _ = scratch.apply(params, {}, jnp.asarray(x))
    np.testing.assert_allclose(y_scratch, expected, rtol=1e-5, atol=1e-6)
    # the library formulation, with the same weights side by side, computes the same
    fused = recurrent(fused_cell(kind, 5))
    y_fused, _ = fused.apply(fuse(kind, params), {}, jnp.asarray(x))
    np.testing.assert_allclose(y_fused, expected, rtol=1e-5, atol=1e-6)
    # and so do their gradients
    loss = lambda layer, p: jnp.sum(layer.apply(p, {}, jnp.asarray(x))[0] ** 2)  # noqa: E731
    g_scratch = jax.grad(lambda p: loss(scratch, p))(params)
    g_fused = jax.grad(lambda p: loss(fused, p))(fuse(kind, params))
    for name, value in fuse(kind, g_scratch).items():
        np.testing.assert_allclose(g_fused[name], value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_carried_state_continues_the_sequence(kind, key):
    """Two halves with the state carried between them give the whole sequence's outputs."""
    layer = recurrent(fused_cell(kind, 4, normal_init(0.5), normal_init(0.3)), carry_batch=3)
    _, params, state = layer.init(key, (8, 2))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a: a.shape == (3, 4), state["carry"]))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 8, 2)), jnp.float32)
    whole, _ = layer.apply(params, state, x, train=True)
    first, state1 = layer.apply(params, state, x[:, :4], train=True)
    second, state2 = layer.apply(params, state1, x[:, 4:], train=True)
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), whole, rtol=1e-5, atol=1e-6)
    # evaluation starts from zero and leaves the carry alone
    alone, eval_state = layer.apply(params, state1, x[:, 4:], train=False)
    np.testing.assert_allclose(alone, layer.apply(params, state, x[:, 4:], train=True)[0], rtol=1e-6)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), eval_state, state1))
    # the carried state is detached: no gradient flows into the previous batch
    grad = jax.grad(lambda s: jnp.sum(layer.apply(params, s, x[:, 4:], train=True)[0]))(state1)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grad))


def test_reset_carries_zeroes_only_carried_states():
    state = {"rnn0": {"carry": jnp.ones((2, 3))}, "bn0": {"mean": jnp.ones(3)}}
    kept = reset_carries(state, jnp.asarray(False))
    reset = reset_carries(state, jnp.asarray(True))
    assert float(kept["rnn0"]["carry"].sum()) == 6 and float(reset["rnn0"]["carry"].sum()) == 0
    assert float(reset["bn0"]["mean"].sum()) == 3
    with pytest.raises(ValueError, match="backward"):
        recurrent(rnn_cell(2), reverse=True, carry_batch=2)


def lm(vocab=28, **model):
    cfg = Config.model_validate({"model": {"name": "rnn_lm", **model}}).model
    return build_model(cfg, BatchSpec((35,), vocab))


@pytest.mark.parametrize("model, count", [
    # the book's counts (D2L 0.16, 9.x; 1.0, 9.5 and 10.x), vocabulary 28
    ({"cell": "rnn", "hidden": 512}, 291_356),
    ({"cell": "gru", "hidden": 256}, 226_076),
    ({"cell": "lstm", "hidden": 256}, 299_036),
    ({"cell": "rnn", "hidden": 32}, 2_876),
    ({"cell": "gru", "hidden": 32}, 6_780),
    ({"cell": "lstm", "hidden": 32}, 8_732),
    ({"cell": "rnn", "hidden": 32, "layers": 2}, 4_956),
    # the book's concise layers keep two biases per gate; ours one: minus layers x directions x gates x hidden
    ({"cell": "gru", "hidden": 256, "impl": "fused"}, 226_844 - 3 * 256),
    ({"cell": "lstm", "hidden": 256, "impl": "fused", "layers": 2}, 826_396 - 2 * 4 * 256),
    ({"cell": "lstm", "hidden": 256, "impl": "fused", "layers": 2, "bidirectional": True}, 2_177_052 - 4 * 4 * 256),
    ({"cell": "gru", "hidden": 32, "impl": "fused", "layers": 2}, 13_212 - 2 * 3 * 32),
])  # fmt: skip
def test_parameter_counts_match_the_book(model, count, key):
    params, _ = lm(**model).init(key)
    assert count_params(params) == count


def test_language_model_shapes_and_bidirectional_outputs(key):
    model = lm(cell="lstm", hidden=8, layers=2, bidirectional=True, impl="fused", init_scale=0.5)
    params, state = model.init(key)
    x = jnp.zeros((3, 35), jnp.int32)
    logits, _ = model.apply(params, state, x)
    assert logits.shape == (3, 35, 28)
    # a bidirectional model's output at step 0 depends on the last token; a forward one's does not
    x2 = x.at[:, -1].set(5)
    assert not np.allclose(model.apply(params, state, x2)[0][:, 0], logits[:, 0], atol=1e-4)
    forward = lm(cell="lstm", hidden=8, impl="fused", init_scale=0.5)
    p, s = forward.init(key)
    np.testing.assert_array_equal(forward.apply(p, s, x2)[0][:, 0], forward.apply(p, s, x)[0][:, 0])


def test_masked_cross_entropy_matches_numpy_with_padding():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
    labels = rng.integers(0, 7, (3, 5))
    valid = np.array([5, 2, 0])
    log_p = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    expected = [-sum(log_p[b, t, labels[b, t]] for t in range(valid[b])) for b in range(3)]
    got = masked_cross_entropy(jnp.asarray(logits), jnp.asarray(np.concatenate([labels, valid[:, None]], axis=1)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert float(got[2]) == 0.0, "a target with no valid token costs nothing"
