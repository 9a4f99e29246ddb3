"""BERT (D2L 14.8): input representation, the encoder and heads against a plain PyTorch port of
the book's classes with copied weights, the printed shapes, and the parameter counts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlrun.core.nn import bert as B

from .torch_weights import copy_linear, copy_norm

SMALL = B.BertSizes(vocab=50, hidden=16, ffn_hidden=24, heads=2, blocks=2, dropout=0.2, max_len=20)


def test_tokens_and_segments_follow_the_book():
    tokens, segments = B.get_tokens_and_segments(["a", "b"], ["c"])
    assert tokens == ["<cls>", "a", "b", "<sep>", "c", "<sep>"]
    assert segments == [0, 0, 0, 0, 1, 1]
    tokens, segments = B.get_tokens_and_segments(["a"])
    assert (tokens, segments) == (["<cls>", "a", "<sep>"], [0, 0, 0])


def test_book_demo_shapes_at_the_book_sizes():
    sizes = B.BertSizes(10000, 768, 1024, 4, 2, 0.2, 1000)
    params = jax.eval_shape(lambda k: B.bert_init(k, sizes), jax.random.PRNGKey(0))
    tokens = jax.ShapeDtypeStruct((2, 8), jnp.int32)
    positions = jax.ShapeDtypeStruct((2, 3), jnp.int32)
    encoded, mlm, nsp = jax.eval_shape(lambda p, t, q: B.bert_model(p, t, t, None, q, sizes), params, tokens, positions)
    assert (encoded.shape, mlm.shape, nsp.shape) == ((2, 8, 768), (2, 3, 10000), (2, 2))


def torch_port(torch, sizes: B.BertSizes):
    """The book's BERTModel in plain torch.nn (eager Linear layers instead of LazyLinear)."""
    nn = torch.nn

    class MultiHead(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d, d, bias=True) for _ in range(4))
            self.dropout = nn.Dropout(sizes.dropout)

        def split(self, x):
            b, t, _ = x.shape
            return x.reshape(b, t, self.heads, -1).permute(0, 2, 1, 3).reshape(b * self.heads, t, -1)

        def forward(self, x, valid_lens):
            q, k, v = self.split(self.W_q(x)), self.split(self.W_k(x)), self.split(self.W_v(x))
            scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
            if valid_lens is not None:
                lens = torch.repeat_interleave(valid_lens, self.heads)
                mask = torch.arange(scores.shape[-1])[None, None, :] < lens[:, None, None]
                scores = scores.masked_fill(~mask, -1e6)
            out = self.dropout(torch.softmax(scores, -1)) @ v
            b = x.shape[0]
            out = out.reshape(b, self.heads, out.shape[1], -1).permute(0, 2, 1, 3).reshape(b, out.shape[1], -1)
            return self.W_o(out)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d = sizes.hidden
            self.attention = MultiHead(d, sizes.heads)
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.dense1, self.dense2 = nn.Linear(d, sizes.ffn_hidden), nn.Linear(sizes.ffn_hidden, d)
            self.dropout = nn.Dropout(sizes.dropout)

        def forward(self, x, valid_lens):
            y = self.ln1(x + self.dropout(self.attention(x, valid_lens)))
            return self.ln2(y + self.dropout(self.dense2(torch.relu(self.dense1(y)))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            d, v = sizes.hidden, sizes.vocab
            self.token_embedding, self.segment_embedding = nn.Embedding(v, d), nn.Embedding(2, d)
            self.pos_embedding = nn.Parameter(torch.randn(1, sizes.max_len, d))
            self.blks = nn.ModuleList([Block() for _ in range(sizes.blocks)])
            self.mlm = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.LayerNorm(d), nn.Linear(d, v))
            self.hidden = nn.Sequential(nn.Linear(d, d), nn.Tanh())
            self.nsp = nn.Linear(d, 2)

        def forward(self, tokens, segments, valid_lens, pred_positions):
            x = self.token_embedding(tokens) + self.segment_embedding(segments) + self.pos_embedding[:, :tokens.shape[1]]
            for blk in self.blks:
                x = blk(x, valid_lens)
            b, p = pred_positions.shape
            masked = x[torch.repeat_interleave(torch.arange(b), p), pred_positions.reshape(-1)].reshape(b, p, -1)
            return x, self.mlm(masked), self.nsp(self.hidden(x[:, 0, :]))

    return Model()


def copy_weights(torch, model, params):
    """Our params into the torch port: dense w (in, out) is Linear.weight transposed."""

    def linear(layer, p, w="w", b="b"):
        copy_linear(torch, layer, p, w, b)

    def norm(layer, p):
        copy_norm(torch, layer, p)

    enc = params["encoder"]
    with torch.no_grad():
        model.token_embedding.weight.copy_(torch.tensor(np.asarray(enc["token"])))
        model.segment_embedding.weight.copy_(torch.tensor(np.asarray(enc["segment"])))
        model.pos_embedding.copy_(torch.tensor(np.asarray(enc["position"]))[None])
        for i, blk in enumerate(model.blks):
            p = enc[f"block{i}"]
            for n in "qkvo":
                linear(getattr(blk.attention, f"W_{n}"), p["attention"], f"w_{n}", f"b_{n}")
            norm(blk.ln1, p["norm0"])
            norm(blk.ln2, p["norm1"])
            linear(blk.dense1, p["ffn"]["dense0"])
            linear(blk.dense2, p["ffn"]["dense1"])
        linear(model.mlm[0], params["mlm"]["dense0"])
        norm(model.mlm[2], params["mlm"]["ln0"])
        linear(model.mlm[3], params["mlm"]["dense1"])
        linear(model.hidden[0], params["hidden"]["dense0"])
        linear(model.nsp, params["nsp"])


def test_forward_matches_a_torch_port_with_copied_weights():
    torch = pytest.importorskip("torch")
    params = B.bert_init(jax.random.PRNGKey(0), SMALL)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, SMALL.vocab, (3, 9))
    segments = np.array([[0] * 4 + [1] * 5, [0] * 3 + [1] * 6, [0] * 9])
    valid_lens = np.array([9, 6, 4])
    positions = np.array([[1, 5, 2], [6, 1, 5], [3, 3, 0]])
    ours = B.bert_model(params, jnp.asarray(tokens), jnp.asarray(segments), jnp.asarray(valid_lens),
                        jnp.asarray(positions), SMALL)
    model = torch_port(torch, SMALL).eval()
    copy_weights(torch, model, params)
    with torch.no_grad():
        ref = model(torch.tensor(tokens), torch.tensor(segments), torch.tensor(valid_lens), torch.tensor(positions))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-4, rtol=1e-4)
    # the mask matters: changing a token beyond row 1's valid length leaves that row unchanged
    changed = tokens.copy()
    changed[1, 7] = (changed[1, 7] + 1) % SMALL.vocab
    again = B.encode(params["encoder"], jnp.asarray(changed), jnp.asarray(segments), jnp.asarray(valid_lens), SMALL)
    np.testing.assert_allclose(np.asarray(again[1, :6]), np.asarray(ours[0][1, :6]), atol=1e-6)


def test_parameter_count_of_the_pretraining_model_matches_torch():
    """D2L 14.10's BERT: 128 hidden, FFN 256, 2 heads, 2 blocks, WikiText-2's vocabulary (the
    book's len(vocab) = 20256 at min_freq 5)."""
    torch = pytest.importorskip("torch")
    sizes = B.BertSizes(20256, 128, 256, 2, 2, 0.2, 1000)
    ours = B.parameter_count(jax.eval_shape(lambda k: B.bert_init(k, sizes), jax.random.PRNGKey(0)))
    theirs = sum(p.numel() for p in torch_port(torch, sizes).parameters())
    assert ours == theirs


def test_losses_match_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(1).normal(size=(6, 11)).astype(np.float32)
    labels = np.array([7, 8, 9, 10, 0, 3])
    ref = torch.nn.CrossEntropyLoss(reduction="none")(torch.tensor(logits), torch.tensor(labels)).numpy()
    np.testing.assert_allclose(np.asarray(B.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))), ref, rtol=1e-5)


def test_dropout_changes_training_but_not_evaluation():
    params = B.bert_init(jax.random.PRNGKey(0), SMALL)
    tokens = jnp.arange(10).reshape(2, 5)
    segments = jnp.zeros_like(tokens)
    a = B.encode(params["encoder"], tokens, segments, None, SMALL, train=True, key=jax.random.PRNGKey(1))
    b = B.encode(params["encoder"], tokens, segments, None, SMALL, train=True, key=jax.random.PRNGKey(2))
    c = B.encode(params["encoder"], tokens, segments, None, SMALL)
    assert not np.allclose(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(c), np.asarray(B.encode(params["encoder"], tokens, segments, None, SMALL)))
    with pytest.raises(ValueError, match="longer than the positional embedding"):
        B.encode(params["encoder"], jnp.zeros((1, 21), jnp.int32), jnp.zeros((1, 21), jnp.int32), None, SMALL)


def test_experiment_reports_the_books_shapes_and_counts_a_mismatch(tmp_path):
    import json

    from dlrun.core.config import Config
    from dlrun.experiments import bert_shapes as X

    cfg = Config.model_validate({"experiment": {"name": "bert_shapes", "small_hiddens": 8, "small_vocab": 40}})
    summary = X.run(cfg, tmp_path)
    assert summary["max_difference"] == 0.0
    assert json.loads((tmp_path / "summary.json").read_text())["shapes"]["mlm_Y_hat"] == [2, 3, 10000]
    assert summary["small_shapes"]["encoded_X"] == (2, 8, 8)
    wrong = dict(X.BOOK_SHAPES, mlm_Y_hat=(2, 3, 9999), mlm_l=(6, 1))
    assert X.mismatches(wrong, X.BOOK_SHAPES) == 2
