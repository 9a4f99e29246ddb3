"""The speed benchmark's PyTorch references of chapter 14 are the networks dlrun trains: with
dlrun's weights copied in (skip-gram: its initial ones; BERT: random ones in its parameters' shapes),
the book's skip-gram (D2L 14.4) and BERTModel (D2L 14.8) give dlrun's outputs, losses and gradients
on a small batch (benchmarks/nlp_reference.py)."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import CONFIGS
from .test_benchmarks import benchmark_module
from .torch_weights import copy_linear, copy_norm

VOCAB, MAX_LEN = 30, 7


def word2vec_batch(rng, n: int = 5) -> tuple[dict, dict]:
    """Skip-gram examples as dlrun's loader lays them out: rows padded with mask 0 and label 0."""
    lens = rng.integers(2, MAX_LEN + 1, n)
    mask = (np.arange(MAX_LEN)[None, :] < lens[:, None]).astype(np.float32)
    label = ((np.arange(MAX_LEN)[None, :] < rng.integers(1, 3, n)[:, None]) * mask).astype(np.float32)
    x = {"center": rng.integers(0, VOCAB, n).astype(np.int32),
         "contexts_negatives": (rng.integers(1, VOCAB, (n, MAX_LEN)) * mask).astype(np.int32)}
    return x, {"mask": mask, "label": label}


def test_the_books_skip_gram_is_dlruns(key):
    torch = pytest.importorskip("torch")
    from dlrun.core.config.word2vec import SkipGramModel
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.word2vec import masked_sigmoid_bce, skip_gram

    ref = benchmark_module("nlp_reference")
    spec = BatchSpec({"center": (), "contexts_negatives": (MAX_LEN,)}, VOCAB, VOCAB, None, None,
                     {"center": VOCAB, "contexts_negatives": VOCAB})
    model = skip_gram(SkipGramModel(embed_size=8), spec)
    params, state = model.init(key)
    x, y = word2vec_batch(np.random.default_rng(0))

    def loss(p):
        out, _ = model.apply(p, state, {k: jnp.asarray(v) for k, v in x.items()})
        return jnp.mean(masked_sigmoid_bce(out, {k: jnp.asarray(v) for k, v in y.items()})), out

    (ours, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    net = ref.word2vec_net(VOCAB, 8)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(np.asarray(params["embed_v"]["w"])))
        net[1].weight.copy_(torch.tensor(np.asarray(params["embed_u"]["w"])))
    xt, yt = ref.as_tensors(x), ref.as_tensors(y)
    pred = ref.skip_gram(xt["center"].reshape(-1, 1), xt["contexts_negatives"], net[0], net[1])
    np.testing.assert_allclose(pred.detach().numpy().reshape(out.shape), np.asarray(out), rtol=1e-5, atol=1e-6)
    theirs = ref.word2vec_loss(net, xt, yt).mean()
    theirs.backward()
    assert theirs.detach().item() == pytest.approx(float(ours), rel=1e-5)
    for i, name in enumerate(("embed_v", "embed_u")):
        np.testing.assert_allclose(net[i].weight.grad.numpy(), np.asarray(grads[name]["w"]), rtol=1e-5, atol=1e-6)


def bert_setup(torch):
    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.bert_models import bert_pretraining

    m = load_config(CONFIGS / "bert_pretrain_ptb.yaml", ["model.num_hiddens=16", "model.ffn_num_hiddens=24",
                                                          "model.num_heads=2", "model.num_blks=2", "model.max_len=20"]).model
    t, p = 12, 3
    spec = BatchSpec({"tokens": (t,), "segments": (t,), "valid_lens": (), "pred_positions": (p,)}, VOCAB, VOCAB)
    return m, bert_pretraining(m, spec), t, p


def bert_batch(rng, t: int, p: int, n: int = 4) -> tuple[dict, dict]:
    """Pretraining examples as dlrun's loader lays them out: padded tokens, valid lengths as
    floats, predicted positions with weight 0 where a row has fewer."""
    valid = rng.integers(5, t + 1, n)
    x = {"tokens": rng.integers(0, VOCAB, (n, t)).astype(np.int32),
         "segments": (np.arange(t)[None, :] >= valid[:, None] // 2).astype(np.int32),
         "valid_lens": valid.astype(np.float32),
         "pred_positions": np.stack([rng.choice(np.arange(1, v), p, replace=False) for v in valid]).astype(np.int32)}
    weights = np.ones((n, p), np.float32)
    weights[0, -1] = weights[2, 1:] = 0
    x["pred_positions"][weights == 0] = 0
    y = {"mlm_labels": rng.integers(0, VOCAB, (n, p)).astype(np.int32), "mlm_weights": weights,
         "nsp_labels": rng.integers(0, 2, n).astype(np.int32)}
    return x, y


def copy_bert(torch, net, params) -> None:
    """dlrun's params into the book's BERTModel: a dense w (in, out) is Linear.weight transposed."""

    def linear(layer, p, w="w", b="b"):
        copy_linear(torch, layer, p, w, b)

    def norm(layer, p):
        copy_norm(torch, layer, p)

    enc = params["encoder"]
    with torch.no_grad():
        net.encoder.token_embedding.weight.copy_(torch.tensor(np.asarray(enc["token"])))
        net.encoder.segment_embedding.weight.copy_(torch.tensor(np.asarray(enc["segment"])))
        net.encoder.pos_embedding.copy_(torch.tensor(np.asarray(enc["position"]))[None])
        for i, blk in enumerate(net.encoder.blks):
            p = enc[f"block{i}"]
            for n in "qkvo":
                linear(getattr(blk.attention, f"W_{n}"), p["attention"], f"w_{n}", f"b_{n}")
            norm(blk.addnorm1.ln, p["norm0"])
            norm(blk.addnorm2.ln, p["norm1"])
            linear(blk.ffn.dense1, p["ffn"]["dense0"])
            linear(blk.ffn.dense2, p["ffn"]["dense1"])
        linear(net.mlm.mlp[0], params["mlm"]["dense0"])
        norm(net.mlm.mlp[2], params["mlm"]["ln0"])
        linear(net.mlm.mlp[3], params["mlm"]["dense1"])
        linear(net.hidden[0], params["hidden"]["dense0"])
        linear(net.nsp.output, params["nsp"])


def test_the_books_bert_is_dlruns(key):
    torch = pytest.importorskip("torch")
    from dlrun.core.nn.bert_models import bert_pretraining_loss

    ref = benchmark_module("nlp_reference")
    m, model, t, p = bert_setup(torch)
    # weights of every shape drawn here (gammas and biases too, so that each one matters): dlrun's
    # init would compile a program per random draw, seconds of the test's time
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(scale=0.5, size=s.shape), jnp.float32),
                                    jax.eval_shape(model.init, key)[0])
    state = {}
    x, y = bert_batch(rng, t, p)

    def loss(params):
        out, _ = model.apply(params, state, {k: jnp.asarray(v) for k, v in x.items()})
        return jnp.mean(bert_pretraining_loss(out, {k: jnp.asarray(v) for k, v in y.items()})), out

    (ours, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    net = ref.bert_net(m, VOCAB).eval()  # evaluation mode: no dropout, as dlrun's apply without train
    assert sum(q.numel() for q in net.parameters()) == sum(a.size for a in jax.tree_util.tree_leaves(params))
    copy_bert(torch, net, params)
    xt, yt = ref.as_tensors(x), ref.as_tensors(y)
    _, mlm, nsp = net(xt["tokens"], xt["segments"], xt["valid_lens"], xt["pred_positions"])
    np.testing.assert_allclose(mlm.detach().numpy(), np.asarray(out["mlm"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nsp.detach().numpy(), np.asarray(out["nsp"]), rtol=1e-5, atol=1e-5)
    theirs = ref.bert_loss(net, xt, yt).mean()
    theirs.backward()
    assert theirs.detach().item() == pytest.approx(float(ours), rel=1e-5)
    np.testing.assert_allclose(net.encoder.token_embedding.weight.grad.numpy(), np.asarray(grads["encoder"]["token"]),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.mlm.mlp[3].weight.grad.numpy().T, np.asarray(grads["mlm"]["dense1"]["w"]),
                               rtol=1e-4, atol=1e-5)


def test_the_references_train_whole_batches_and_report_their_loss():
    """run_word2vec and run_bert at a tiny size: one warm-up and two timed epochs of shuffled
    batches, the loss of the last (BERT's epochs are its config's steps)."""
    torch = pytest.importorskip("torch")
    ref = benchmark_module("nlp_reference")
    rng = np.random.default_rng(1)
    x, y = word2vec_batch(rng, 40)
    cfg = SimpleNamespace(seed=0, model=SimpleNamespace(embed_size=8), optimizer=SimpleNamespace(lr=0.01),
                          data=SimpleNamespace(batch_size=16))
    out = ref.run_word2vec(cfg, SimpleNamespace(x_train=x, y_train=y, num_classes=VOCAB, num_train=40), 2)
    assert len(out["epoch_seconds"]) == 2 and 0 < out["train_loss"] < 10 and out["val_acc"] is None
    m, _, t, p = bert_setup(torch)
    x, y = bert_batch(rng, t, p, 40)
    cfg = SimpleNamespace(seed=0, model=m, optimizer=SimpleNamespace(lr=0.01), data=SimpleNamespace(batch_size=8, steps_per_epoch=2))
    out = ref.run_bert(cfg, SimpleNamespace(x_train=x, y_train=y, num_classes=VOCAB, num_train=40), 2)
    assert len(out["epoch_seconds"]) == 2 and 0 < out["train_loss"] < 20
