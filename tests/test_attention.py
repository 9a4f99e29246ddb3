"""Attention layers (D2L 11.1-11.6) against numpy loops and the book's printed demos."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.nn.attention import (
    additive_attention,
    additive_init,
    causal_mask,
    dot_product_attention,
    length_mask,
    masked_softmax,
    multi_head_attention,
    multi_head_init,
    positional_encoding,
)


def np_masked_softmax(scores, valid):
    """A loop: softmax over the first valid[b][q] keys of each row, zeros after them."""
    out = np.zeros_like(scores, dtype=np.float64)
    for idx in np.ndindex(scores.shape[:-1]):
        n = int(valid[idx])
        if n:
            row = np.exp(scores[idx][:n] - scores[idx][:n].max())
            out[idx][:n] = row / row.sum()
    return out


def test_masked_softmax_zeroes_positions_beyond_each_valid_length():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 2, 4)).astype(np.float32)
    for valid in (np.array([2, 3]), np.array([[1, 3], [2, 4]])):  # the book's two demos
        got = np.asarray(masked_softmax(jnp.asarray(scores), length_mask(jnp.asarray(valid), 2, 4)))
        full = np.broadcast_to(valid[:, None] if valid.ndim == 1 else valid, (2, 2))
        np.testing.assert_allclose(got, np_masked_softmax(scores, full), rtol=1e-6, atol=1e-7)


def test_a_row_with_nothing_visible_gets_zero_weight_and_finite_gradients():
    scores = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 5)), jnp.float32)
    mask = length_mask(jnp.asarray([0, 5]), 3, 5)
    weights = masked_softmax(scores, mask)
    assert np.all(np.asarray(weights[0]) == 0) and np.allclose(np.asarray(weights[1]).sum(-1), 1)
    grads = jax.grad(lambda s: jnp.sum(masked_softmax(s, mask) ** 2))(scores)
    assert np.all(np.isfinite(np.asarray(grads)))
    big = masked_softmax(jnp.full((1, 1, 3), 1e30), None)  # no mask: a plain softmax
    np.testing.assert_allclose(np.asarray(big), 1 / 3)


def book_demo_values():
    return jnp.tile(jnp.arange(40, dtype=jnp.float32).reshape(1, 10, 4), (2, 1, 1))


def test_additive_attention_reproduces_the_book_demo():
    """Identical keys: uniform weights over the valid positions, so the output is the mean of
    the first 2 (first row) and 6 (second row) values: [[2, 3, 4, 5]], [[10, 11, 12, 13]]."""
    queries = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 20))
    keys = jnp.ones((2, 10, 2))
    params = additive_init(jax.random.PRNGKey(1), 20, 2, 8)
    out, weights = additive_attention(params, queries, keys, book_demo_values(), length_mask(jnp.asarray([2, 6]), 1, 10))
    np.testing.assert_allclose(np.asarray(out), [[[2, 3, 4, 5]], [[10, 11, 12, 13]]], rtol=1e-5)
    assert weights.shape == (2, 1, 10)


def test_additive_attention_matches_numpy():
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 4, 7))
    params = additive_init(jax.random.PRNGKey(3), 5, 6, 8)
    w_q, w_k, w_v = (np.asarray(params[n], np.float64) for n in ("w_q", "w_k", "w_v"))
    valid = np.array([4, 2])
    expected = np.zeros((2, 3, 7))
    for b in range(2):
        for i in range(3):
            scores = np.array([np.tanh(q[b, i] @ w_q + k[b, j] @ w_k) @ w_v for j in range(4)])
            weights = np_masked_softmax(scores[None], np.array([valid[b]]))[0]
            expected[b, i] = weights @ v[b]
    got, _ = additive_attention(params, *(jnp.asarray(a, jnp.float32) for a in (q, k, v)), length_mask(jnp.asarray(valid), 3, 4))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)


def test_scaled_dot_product_attention_reproduces_the_book_demo_and_numpy():
    queries = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 2))
    out, _ = dot_product_attention(queries, jnp.ones((2, 10, 2)), book_demo_values(), length_mask(jnp.asarray([2, 6]), 1, 10))
    np.testing.assert_allclose(np.asarray(out), [[[2, 3, 4, 5]], [[10, 11, 12, 13]]], rtol=1e-5)
    rng = np.random.default_rng(4)
    q, k, v = rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 5, 8)), rng.normal(size=(2, 5, 3))
    scores = np.einsum("bqd,bkd->bqk", q, k) / math.sqrt(8)
    expected = np.einsum("bqk,bkv->bqv", np_masked_softmax(scores, np.array([[5, 5, 5], [3, 3, 3]])), v)
    got, _ = dot_product_attention(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)), length_mask(jnp.asarray([5, 3]), 3, 5))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)


def test_multi_head_attention_equals_one_attention_per_head():
    rng = np.random.default_rng(5)
    hidden, heads = 12, 3
    q, k = rng.normal(size=(2, 4, 10)), rng.normal(size=(2, 6, 9))
    params = multi_head_init(jax.random.PRNGKey(6), 10, 9, 9, hidden)
    p = {n: np.asarray(a, np.float64) for n, a in params.items()}
    valid = np.array([3, 2])  # the book's demo lengths
    qh, kh, vh = q @ p["w_q"], k @ p["w_k"], k @ p["w_v"]
    d = hidden // heads
    outs = []
    for h in range(heads):
        s = slice(h * d, (h + 1) * d)
        scores = np.einsum("bqd,bkd->bqk", qh[..., s], kh[..., s]) / math.sqrt(d)
        outs.append(np.einsum("bqk,bkv->bqv", np_masked_softmax(scores, np.repeat(valid[:, None], 4, 1)), vh[..., s]))
    expected = np.concatenate(outs, -1) @ p["w_o"]
    got, weights = multi_head_attention(params, jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32),
                                        jnp.asarray(k, jnp.float32), heads, length_mask(jnp.asarray(valid), 4, 6))
    assert got.shape == (2, 4, hidden) and weights.shape == (2, heads, 4, 6)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)
    assert sum(x.size for x in params.values()) == 10 * 12 + 9 * 12 + 9 * 12 + 12 * 12  # no biases by default


def test_the_causal_mask_keeps_a_position_from_seeing_later_ones():
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(1, 6, 8)), jnp.float32)
    params = multi_head_init(jax.random.PRNGKey(8), 8, 8, 8, 8)
    out, weights = multi_head_attention(params, x, x, x, 2, causal_mask(6))
    changed = x.at[0, 4:].set(jnp.asarray(rng.normal(size=(2, 8)), jnp.float32))
    out2, _ = multi_head_attention(params, changed, changed, changed, 2, causal_mask(6))
    np.testing.assert_allclose(np.asarray(out2[0, :4]), np.asarray(out[0, :4]), rtol=1e-6)
    assert not np.allclose(np.asarray(out2[0, 4:]), np.asarray(out[0, 4:]))
    assert np.all(np.asarray(weights)[0, :, np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0)


def test_positional_encoding_values():
    p = positional_encoding(60, 32)
    assert p.shape == (60, 32)
    for i, j in ((0, 0), (7, 3), (59, 6), (59, 9), (13, 31)):
        rate = 10000 ** ((j - j % 2) / 32)
        assert math.isclose(p[i, j], (math.sin if j % 2 == 0 else math.cos)(i / rate), abs_tol=1e-6)
    assert round(float(p[59, 6]), 3) == pytest.approx(-0.876, abs=2e-3)  # the book's plot
    assert round(float(p[59, 9]), 3) == pytest.approx(0.928, abs=2e-3)


def test_nadaraya_watson_kernel_and_one_gradient_step_against_finite_differences():
    from dlrun.experiments.attention import fit_bandwidth, kernel_data, kernel_weights

    d = kernel_data(20, 0.5, seed=0)
    x, y = jnp.asarray(d["x_train"]), jnp.asarray(d["y_train"])
    a = np.asarray(kernel_weights(x, x, 1.3, leave_one_out=True))
    assert np.all(np.diag(a) == 0) and np.allclose(a.sum(1), 1)
    xd, yd = d["x_train"].astype(np.float64), d["y_train"].astype(np.float64)

    def loss(w):  # numpy, float64
        s = -(((xd[:, None] - xd[None, :]) * w) ** 2) / 2
        np.fill_diagonal(s, -np.inf)
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return 0.5 * np.sum((p @ yd - yd) ** 2)

    w1, losses = fit_bandwidth(x, y, 0.7, lr=0.05, epochs=1)
    grad = (loss(0.7 + 1e-5) - loss(0.7 - 1e-5)) / 2e-5
    assert math.isclose(losses[0], loss(0.7), rel_tol=1e-4)
    assert math.isclose(w1, 0.7 - 0.05 * grad, rel_tol=1e-3)


def test_the_attention_experiments_run_end_to_end(tmp_path):
    import json

    from typer.testing import CliRunner

    from dlrun.cli.main import app

    from .conftest import CONFIGS

    runner = CliRunner()
    out = tmp_path / "nw"
    assert runner.invoke(app, ["train", str(CONFIGS / "nadaraya_watson.yaml"), "--out", str(out)]).exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["losses"][-1] < summary["losses"][0] and summary["w"] > summary["w_initial"]  # a sharper kernel
    mse = summary["test_mse"]
    assert mse["learned w kernel"] < mse["non-parametric kernel"] < mse["average pooling"]
    assert (out / "attention.png").stat().st_size > 10000 and (out / "predictions.png").stat().st_size > 10000
    pe = tmp_path / "pe"
    assert runner.invoke(app, ["train", str(CONFIGS / "positional_encoding.yaml"), "--out", str(pe)]).exit_code == 0
    values = json.loads((pe / "summary.json").read_text())["values"]
    assert values["position 59, col 6"] == pytest.approx(-0.876, abs=2e-3)
    assert (pe / "positional_encoding.png").stat().st_size > 10000
