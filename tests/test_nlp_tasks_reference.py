"""The speed benchmark's PyTorch references of chapter 15 are the networks dlrun trains: built as
dlrun builds them for a small data set of the loaders' form, the book's BiRNN (D2L 15.2), textCNN
(15.3), decomposable attention (15.5) and BERTClassifier (15.7) have dlrun's parameter count,
start with the same spread of weights, and with dlrun's weights copied in give its logits; the
BiRNN and textCNN also its loss and weights after one Adam step. Each reference trains as many
examples an epoch as dlrun's loop, and `speed_models.bert_classifier_setup` gives the classifier run that the
`bert_nli` experiment trains, without pretraining (benchmarks/nlp_tasks_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from .conftest import CONFIGS
from .test_benchmarks import benchmark_module

VOCAB, STEPS, PAD = 30, 9, 1
BIRNN = ("sentiment_birnn_cpu.yaml", ["model.embed_size=32", "model.hidden=4", "data.batch_size=8"])
TEXTCNN = ("sentiment_textcnn_cpu.yaml", ["model.embed_size=10", "model.kernel_sizes=[2,3,4]", "model.channels=[8,6,4]",
                                          "data.batch_size=8"])
DECOMPOSABLE = ("nli_decomposable_cpu.yaml", ["model.embed_size=10", "model.num_hiddens=12", "data.batch_size=8"])
BERT = ("bert_snli_cpu.yaml", ["model.num_hiddens=16", "model.ffn_num_hiddens=24", "model.num_heads=2",
                               "model.num_blks=2", "model.max_len=20", "data.batch_size=8"])


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One PyTorch thread while a test runs: at these sizes a second one only waits (on a shared
    machine, for a descheduled one, seconds a step)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ data of the loaders' form


def padded_ids(rng, n: int, steps: int = STEPS) -> np.ndarray:
    """(n, steps) int32 token ids of 2..steps tokens each, then `<pad>` (id 1), as the imdb and
    snli loaders pad."""
    lens = rng.integers(2, steps + 1, n)
    ids = rng.integers(2, VOCAB, (n, steps))
    return np.where(np.arange(steps)[None, :] < lens[:, None], ids, PAD).astype(np.int32)


def bert_pairs(rng, n: int, steps: int = STEPS) -> dict:
    """snli_bert's inputs: `<cls>` p `<sep>` h `<sep>` ids, segments 0 then 1, int32 valid lengths."""
    valid = rng.integers(5, steps + 1, n)
    inside = np.arange(steps)[None, :] < valid[:, None]
    segments = (np.arange(steps)[None, :] >= valid[:, None] // 2) & inside
    return {"tokens": np.where(inside, rng.integers(0, VOCAB, (n, steps)), PAD).astype(np.int32),
            "segments": segments.astype(np.int32), "valid_lens": valid.astype(np.int32)}


def dataset(kind: str, n: int = 20, n_val: int = 13, seed: int = 0):
    """A data set as dlrun's loader of `kind` lays it out: its inputs, labels, vocabulary and
    sampling (imdb drops the last partial batch; SNLI's loaders keep it)."""
    from dlrun.core.data.dataset import Dataset
    from dlrun.core.data.sampling import Sampling

    rng = np.random.default_rng(seed)
    meta = {"vocab": ["<unk>", "<pad>", *(f"w{i}" for i in range(VOCAB - 2))]}
    classes = 2 if kind == "imdb" else 3

    def split(size):
        if kind == "imdb":
            x = padded_ids(rng, size)
        else:
            x = bert_pairs(rng, size) if kind == "snli_bert" else {k: padded_ids(rng, size) for k in ("premise", "hypothesis")}
        return x, rng.integers(0, classes, size).astype(np.int32)

    sampling = Sampling() if kind == "imdb" else Sampling("shuffle", drop_last=False)
    return Dataset(*split(n), *split(n_val), classes, meta=meta, sampling=sampling)


def dlrun_run(spec: tuple, data, extra=()):
    """dlrun's set-up of the config `spec` names (with its tiny sizes) on `data`, its initial
    state and a jitted evaluation forward pass (no dropout)."""
    from dlrun.core.config import load_config
    from dlrun.core.training.setup import build_setup, start_state

    name, overrides = spec
    cfg = load_config(CONFIGS / name, ["trainer.progress=none", *overrides, *extra])
    setup = build_setup(cfg, data)
    state, keys = start_state(setup, jax.random.PRNGKey(cfg.seed))
    forward = jax.jit(lambda p, s, x: setup.model.apply(p, s, x, train=False)[0])
    return cfg, setup, state, keys, forward


# ------------------------------------------------------------------ dlrun's params in PyTorch's layout


def linear(layer, p, w: str = "w", b: str = "b") -> list:
    """A dense w (in, out) is `Linear.weight` transposed."""
    return [(layer.weight, np.asarray(p[w]).T), (layer.bias, np.asarray(p[b]))]


def torch_gates(a) -> np.ndarray:
    """A fused LSTM array's gate blocks on the last axis, from dlrun's order (`GATES`: i, f, o,
    then the candidate c) to PyTorch's (i, f, g the candidate, o)."""
    from dlrun.core.nn.rnn import GATES

    blocks = dict(zip(GATES["lstm"], np.split(np.asarray(a), 4, axis=-1)))
    return np.concatenate([blocks[g] for g in "ifco"], axis=-1)


def birnn_pairs(net, params, layers: int) -> list:
    pairs = [(net.embedding.weight, np.asarray(params["embed0"]["w"]))]
    for layer in range(layers):
        for branch, suffix in enumerate(("", "_reverse")):  # the forward cell, then the backward one
            p, end = params[f"birnn{layer}"][f"branch{branch}"], f"_l{layer}{suffix}"
            pairs += [(net.encoder.get_parameter(f"weight_ih{end}"), torch_gates(p["w_x"]).T),
                      (net.encoder.get_parameter(f"weight_hh{end}"), torch_gates(p["w_h"]).T),
                      (net.encoder.get_parameter(f"bias_ih{end}"), torch_gates(p["b"]))]
    return pairs + linear(net.decoder, params["dense0"])


def textcnn_pairs(net, params, model_state) -> list:
    pairs = [(net.embedding.weight, np.asarray(params["embeddings0"]["branch0"]["w"])),
             (net.constant_embedding.weight, np.asarray(model_state["embeddings0"]["branch1"]["w"]))]
    for i, conv in enumerate(net.convs):  # (width, c_in, c_out) -> nn.Conv1d's (c_out, c_in, width)
        p = params["convs0"][f"branch{i}"]["conv1d0"]
        pairs += [(conv.weight, np.asarray(p["w"]).transpose(2, 1, 0)), (conv.bias, np.asarray(p["b"]))]
    return pairs + linear(net.decoder, params["dense0"])


def mlp_pairs(seq, p) -> list:
    import torch

    dense = [m for m in seq if isinstance(m, torch.nn.Linear)]
    return linear(dense[0], p["dense0"]) + linear(dense[1], p["dense1"])


def decomposable_pairs(net, params) -> list:
    return ([(net.embedding.weight, np.asarray(params["embed"]["w"]))] + mlp_pairs(net.attend.f, params["attend"])
            + mlp_pairs(net.compare.g, params["compare"]) + mlp_pairs(net.aggregate.h, params["aggregate"])
            + linear(net.aggregate.linear, params["dense"]))


def bert_classifier_pairs(net, params) -> list:
    enc = params["encoder"]
    pairs = [(net.encoder.token_embedding.weight, np.asarray(enc["token"])),
             (net.encoder.segment_embedding.weight, np.asarray(enc["segment"])),
             (net.encoder.pos_embedding, np.asarray(enc["position"])[None])]
    for i, blk in enumerate(net.encoder.blks):
        p = enc[f"block{i}"]
        for n in "qkvo":
            pairs += linear(getattr(blk.attention, f"W_{n}"), p["attention"], f"w_{n}", f"b_{n}")
        for ln, norm in ((blk.addnorm1.ln, p["norm0"]), (blk.addnorm2.ln, p["norm1"])):
            pairs += [(ln.weight, np.asarray(norm["gamma"])), (ln.bias, np.asarray(norm["beta"]))]
        pairs += linear(blk.ffn.dense1, p["ffn"]["dense0"]) + linear(blk.ffn.dense2, p["ffn"]["dense1"])
    return pairs + linear(net.hidden[0], params["hidden"]["dense0"]) + linear(net.output, params["output"])


def trainable(net) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def assert_same_start(pairs) -> None:
    """PyTorch's initial weights are drawn as dlrun's: each constant array (a zero bias, a unit
    gain) equal, each array of 100 or more draws of about the same spread (within 20%)."""
    for param, ours in pairs:
        theirs = param.detach().numpy()
        assert theirs.shape == ours.shape
        if ours.std() == 0:
            np.testing.assert_array_equal(theirs, ours)
        elif ours.size >= 100:
            assert 0.8 < theirs.std() / ours.std() < 1.25, (theirs.shape, theirs.std(), ours.std())


def copy_in(torch, pairs) -> None:
    with torch.no_grad():
        for param, ours in pairs:
            param.copy_(torch.tensor(ours))


def assert_logits_agree(torch, net, forward_torch, forward, state, data) -> None:
    """Evaluation mode (no dropout) on the training examples, as dlrun's apply without train."""
    ref = benchmark_module("nlp_tasks_reference")
    net.eval()
    with torch.no_grad():
        theirs = forward_torch(ref.named_tensors(data.x_train)).numpy()
    ours = np.asarray(forward(state.params, state.model_state, jax.tree_util.tree_map(jnp.asarray, data.x_train)))
    assert theirs.shape == ours.shape == (data.num_train, data.num_classes)
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def assert_one_adam_step_agrees(torch, net, forward_torch, pairs_of, cfg, setup, state, keys, data) -> None:
    """dlrun's train step on the first batch of examples against the reference's: its loss,
    zero_grad, backward, its `adam`'s step; the same loss before it and the same weights after."""
    from dlrun.core.training.setup import train_arrays
    from dlrun.core.training.state import take

    ref = benchmark_module("nlp_tasks_reference")
    b = cfg.data.batch_size
    new_state, metrics = jax.jit(setup.train_step)(state, take(train_arrays(data), jnp.arange(b)), keys["step"])
    net.train()
    optimizer = ref.adam(net, cfg)
    x = {k: v[:b] for k, v in ref.named_tensors(data.x_train).items()}
    loss = torch.nn.CrossEntropyLoss()(forward_torch(x), torch.from_numpy(data.y_train[:b].astype(np.int64)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert loss.item() == pytest.approx(float(metrics["loss"]), rel=1e-5)
    for param, ours in pairs_of(new_state):
        np.testing.assert_allclose(param.detach().numpy(), ours, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ the four networks


def test_the_books_birnn_is_dlruns():
    torch = pytest.importorskip("torch")
    from dlrun.core.nn.params import count

    ref = benchmark_module("nlp_tasks_reference")
    data = dataset("imdb")
    cfg, setup, state, keys, forward = dlrun_run(BIRNN, data)
    torch.manual_seed(0)
    net = ref.birnn_net(cfg.model, VOCAB, data.num_classes)
    assert trainable(net) == count(state.params)
    assert all(not p.any() for n, p in net.encoder.named_parameters() if n.startswith("bias_hh"))
    pairs_of = lambda s: birnn_pairs(net, s.params, cfg.model.layers)  # noqa: E731
    assert_same_start(pairs_of(state))
    copy_in(torch, pairs_of(state))
    assert_logits_agree(torch, net, lambda x: net(x["x"]), forward, state, data)


def test_the_books_textcnn_is_dlruns():
    torch = pytest.importorskip("torch")
    from dlrun.core.nn.params import count

    ref = benchmark_module("nlp_tasks_reference")
    data = dataset("imdb")
    # no dropout, so that the step is the same on both sides; evaluation ignores it anyway
    cfg, setup, state, keys, forward = dlrun_run(TEXTCNN, data, ["model.dropout=0"])
    torch.manual_seed(0)
    net = ref.textcnn_net(cfg.model, VOCAB, data.num_classes)
    assert trainable(net) == count(state.params)  # the constant table is model state in dlrun, untrained in PyTorch
    pairs_of = lambda s: textcnn_pairs(net, s.params, s.model_state)  # noqa: E731
    assert_same_start(pairs_of(state))
    copy_in(torch, pairs_of(state))
    assert_logits_agree(torch, net, lambda x: net(x["x"]), forward, state, data)
    assert_one_adam_step_agrees(torch, net, lambda x: net(x["x"]), pairs_of, cfg, setup, state, keys, data)


def test_the_books_decomposable_attention_is_dlruns():
    torch = pytest.importorskip("torch")
    from dlrun.core.nn.params import count

    ref = benchmark_module("nlp_tasks_reference")
    data = dataset("snli")
    cfg, setup, state, keys, forward = dlrun_run(DECOMPOSABLE, data, ["model.dropout=0"])
    torch.manual_seed(0)
    net = ref.decomposable_net(cfg.model, VOCAB, data.num_classes)
    assert trainable(net) == count(state.params)
    pairs_of = lambda s: decomposable_pairs(net, s.params)  # noqa: E731
    assert_same_start(pairs_of(state))
    copy_in(torch, pairs_of(state))
    forward_torch = lambda x: net((x["premise"], x["hypothesis"]))  # noqa: E731
    assert_logits_agree(torch, net, forward_torch, forward, state, data)
    assert_one_adam_step_agrees(torch, net, forward_torch, pairs_of, cfg, setup, state, keys, data)


def test_the_books_bert_classifier_is_dlruns():
    torch = pytest.importorskip("torch")
    from dlrun.core.nn.params import count

    ref = benchmark_module("nlp_tasks_reference")
    data = dataset("snli_bert")
    cfg, setup, state, keys, forward = dlrun_run(BERT, data)
    torch.manual_seed(0)
    net = ref.bert_classifier_net(cfg.model, VOCAB, data.num_classes)
    assert trainable(net) == count(state.params)
    assert_same_start(bert_classifier_pairs(net, state.params))
    # dlrun's initial weights moved by noise, so that the zero biases and unit gains matter too
    rng = np.random.default_rng(1)
    state = state._replace(params=jax.tree_util.tree_map(lambda a: a + rng.normal(scale=0.3, size=a.shape).astype(np.float32),
                                                         state.params))
    copy_in(torch, bert_classifier_pairs(net, state.params))
    assert_logits_agree(torch, net, lambda x: net((x["tokens"], x["segments"], x["valid_lens"])), forward, state, data)


# ------------------------------------------------------------------ training runs


@pytest.mark.parametrize("run, spec, kind", [("run_birnn", BIRNN, "imdb"), ("run_textcnn", TEXTCNN, "imdb"),
                                             ("run_decomposable", DECOMPOSABLE, "snli"),
                                             ("run_bert_classifier", BERT, "snli_bert")])
def test_each_reference_trains_dlruns_epoch(run, spec, kind):
    """A warm-up and two timed epochs; as many examples an epoch as dlrun's loop trains (imdb:
    its whole batches, 16 of 20; SNLI's: all 20, the last batch partial), then the accuracy on
    the validation split."""
    pytest.importorskip("torch")
    from dlrun.core.config import load_config
    from dlrun.core.training.setup import build_setup

    ref = benchmark_module("nlp_tasks_reference")
    data = dataset(kind)
    cfg = load_config(CONFIGS / spec[0], ["trainer.progress=none", *spec[1]])
    setup = build_setup(cfg, data)
    trained = data.num_train if data.sampling.keeps_partial_batch(data.num_train, setup.batch_size) else \
        setup.steps_per_epoch * setup.batch_size
    out = getattr(ref, run)(cfg, data, 2)
    assert out["examples_trained"] == trained == (20 if kind != "imdb" else 16)
    assert len(out["epoch_seconds"]) == 2 and np.isfinite(out["train_loss"]) and 0 <= out["val_acc"] <= 1
    assert out["val_acc"] * len(data.y_val) == pytest.approx(round(out["val_acc"] * len(data.y_val)))  # of the 13 examples


def test_bert_classifier_setup_is_the_experiments_classifier_run(tmp_path):
    """The `bert_nli` experiment's sizes and vocabulary without its pretraining: the encoder's
    sizes of the pretraining config, the pairs in its data's vocabulary, the generic loop."""
    pytest.importorskip("torch")
    from dlrun.core.config import load_config
    from dlrun.core.data import load_dataset

    from .test_bert_pretrain import write_corpus, write_fra

    ref = benchmark_module("nlp_tasks_reference")
    corpus, fra = write_corpus(tmp_path / "timemachine.txt"), write_fra(tmp_path / "fra.txt")
    pretrain = {"data.corpus": "timemachine", "data.file": str(corpus), "data.batch_size": 32, "data.max_len": 24,
                "model.num_hiddens": 16, "model.ffn_num_hiddens": 32, "model.num_blks": 1}
    overrides = [f"experiment.pretrain={pretrain}", f"data.file={fra}", "data.num_val=20", "data.max_len=24",
                 "data.batch_size=32", "trainer.progress=none"]
    (tmp_path / "vocab").mkdir()
    cfg, data = benchmark_module("speed_models").bert_classifier_setup(CONFIGS / "bert_snli_cpu.yaml", overrides, tmp_path / "vocab")
    pre = load_config(CONFIGS / "bert_pretrain_ptb.yaml", [f"{k}={v}" for k, v in pretrain.items()])
    assert cfg.experiment.name == "train" and cfg.init_from is None and cfg.name == "scratch"
    assert (cfg.model.num_hiddens, cfg.model.ffn_num_hiddens, cfg.model.num_blks) == (16, 32, 1)
    assert cfg.model.dropout == 0.1 and cfg.optimizer.lr == 5e-4  # the fine-tuning config's own
    assert data.meta["vocab"] == load_dataset(pre.data, pre.seed).meta["vocab"]
    assert data.x_train["tokens"].shape[1] == 24 and data.num_classes == 3
    net = ref.bert_classifier_net(cfg.model, len(data.meta["vocab"]), data.num_classes).eval()
    x = {k: v[:4] for k, v in ref.named_tensors(data.x_train).items()}
    assert net((x["tokens"], x["segments"], x["valid_lens"])).shape == (4, 3)
