"""Machine translation (D2L 10.5-10.8): the book's preprocessing and arrays, the encoder-decoder
(its parameter count, its causality), BLEU against hand-computed values, greedy decoding and
beam search (k = 1 is greedy; a beam wide enough is exhaustive search), a tiny model trained
through the one trainer with the masked loss, and `dlrun predict` on trained runs."""

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import Config
from dlrun.core.config.models import BahdanauModel, Seq2SeqModel, TransformerModel
from dlrun.core.config.schema import FraEngData
from dlrun.core.data import load_dataset
from dlrun.core.data.text import Vocab
from dlrun.core.data.translation import RESERVED, pack_pairs, parse_pairs, preprocess
from dlrun.core.nn.losses import masked_cross_entropy
from dlrun.core.nn.models import ENCODER_DECODERS
from dlrun.core.nn.params import count as count_params
from dlrun.core.nn.seq2seq import beam_search, greedy_decode
from dlrun.core.training.train import train
from dlrun.core.training.translate import bleu, corpus_bleu, translate

runner = CliRunner()

# a tiny "language pair": a subject and an object, each word with its own translation
SUBJECTS = {"i": "je", "you": "tu", "he": "il", "we": "nous"}
OBJECTS = {"cats": "chats", "dogs": "chiens", "tea": "thé", "rain": "pluie", "books": "livres"}
VERBS = {"i": "vois", "you": "vois", "he": "voit", "we": "voyons"}
PAIRS = [(f"{s} see {o}.", f"{SUBJECTS[s]} {VERBS[s]} les {OBJECTS[o]} !") for s in SUBJECTS for o in OBJECTS]


def test_preprocessing_follows_the_book():
    assert preprocess("Go.\tVa !") == "go .\tva !"
    assert preprocess("Run!\tCours\u202f!") == "run !\tcours !"
    assert preprocess("Hi,\xa0you?") == "hi , you ?"
    pairs = parse_pairs("Go.\tVa !\nno tab here\nI lost.\tJ'ai perdu.\n")
    assert pairs == [(["go", "."], ["va", "!"]), (["i", "lost", "."], ["j'ai", "perdu", "."])]


def test_pairs_are_padded_with_eos_bos_and_valid_lengths():
    pairs = [(["hi", "."], ["salut", "."]), (["a", "b", "c", "d", "e"], ["f"])]
    src_vocab = Vocab([t for s, _ in pairs for t in s], reserved=RESERVED)
    tgt_vocab = Vocab([t for _, s in pairs for t in s], reserved=RESERVED)
    assert [src_vocab[t] for t in ("<unk>", "<pad>", "<bos>", "<eos>")] == [0, 1, 2, 3]
    x, y = pack_pairs(pairs, src_vocab, tgt_vocab, num_steps=4)
    assert sorted(x) == ["dec", "src", "src_len"] and all(a.dtype == np.int32 for a in x.values())
    pad, bos, eos = 1, 2, 3
    s = src_vocab.indices
    # "hi ." -> hi . <eos> <pad>, valid 3; a sentence longer than num_steps loses its <eos>
    np.testing.assert_array_equal(x["src"], [[*s(["hi", "."]), eos, pad], s(["a", "b", "c", "d"])])
    np.testing.assert_array_equal(x["src_len"], [3, 4])
    t = tgt_vocab.indices
    np.testing.assert_array_equal(y[:, :-1], [[*t(["salut", "."]), eos, pad], [*t(["f"]), eos, pad, pad]])
    np.testing.assert_array_equal(y[:, -1], [3, 2])
    # teacher forcing: the decoder reads <bos> and the target but its last token
    np.testing.assert_array_equal(x["dec"], np.concatenate([[[bos], [bos]], y[:, :-2]], axis=1))


def test_the_fra_eng_file_loads_as_the_book_shows(d2l_data_dir):
    if not (d2l_data_dir / "fra-eng" / "fra.txt").is_file():
        pytest.skip("fra-eng/fra.txt is not in the data directory")
    data = load_dataset(FraEngData(dir=str(d2l_data_dir), num_train=512, num_val=129), seed=0)
    assert data.input_shape == {"src": (9,), "src_len": (), "dec": (9,)} and data.num_train == 512
    assert data.y_train.shape == (512, 10) and data.x_val["src"].shape == (129, 9)
    src, tgt = data.meta["src_vocab"], data.meta["tgt_vocab"]
    assert [src[i] for i in data.x_train["src"][0]] == ["go", ".", "<eos>"] + ["<pad>"] * 6
    assert [tgt[i] for i in data.y_train[0, :-1]] == ["va", "!", "<eos>"] + ["<pad>"] * 6
    assert data.meta["val_pairs"][0][0] == preprocess(data.meta["val_pairs"][0][0])


@pytest.mark.parametrize("name, h, per_src, per_tgt, rest", [
    ("seq2seq", 32, 32, 65, 28_416), ("seq2seq", 256, 256, 513, 1_775_616),
    ("bahdanau", 32, 32, 65, 30_496), ("bahdanau", 256, 256, 513, 1_906_944),
])
def test_the_rnn_encoder_decoders_have_the_books_parameter_counts(name, h, per_src, per_tgt, rest):
    """The book's counts are for GRUs with two biases per gate; ours keep one (the book's
    equations), 3 gates x hidden fewer per layer, four layers in all."""
    v_src, v_tgt = 50, 70
    cfg = (Seq2SeqModel if name == "seq2seq" else BahdanauModel)(embed=h, hidden=h, layers=2)
    params = jax.eval_shape(ENCODER_DECODERS[name](cfg, v_src, v_tgt, 9).init, jax.random.PRNGKey(0))
    assert count_params(params) == per_src * v_src + per_tgt * v_tgt + rest - 4 * 3 * h


@pytest.mark.parametrize("d, per_src, per_tgt, rest", [(32, 32, 65, 41_984), (256, 256, 513, 1_710_336)])
def test_the_transformer_has_the_books_parameter_count(d, per_src, per_tgt, rest):
    v_src, v_tgt = 50, 70
    model = ENCODER_DECODERS["transformer"](TransformerModel(hidden=d, ffn_hidden=64, heads=4, blocks=2), v_src, v_tgt, 9)
    assert count_params(jax.eval_shape(model.init, jax.random.PRNGKey(0))) == per_src * v_src + per_tgt * v_tgt + rest


def test_the_transformer_init_is_the_books_pytorch_default_or_xavier():
    """uniform (the default): every dense weight and bias U(+-1/sqrt(fan_in)), PyTorch's
    nn.Linear init, which the book's layers keep; xavier: Xavier-uniform weights, zero biases."""
    d, v_tgt = 256, 70
    for init in ("uniform", "xavier"):
        cfg = TransformerModel(hidden=d, ffn_hidden=64, heads=4, blocks=2, init=init)
        dec = ENCODER_DECODERS["transformer"](cfg, 50, v_tgt, 9).init(jax.random.PRNGKey(0))["decoder"]
        ffn = dec["block0"]["ffn"]["dense1"]
        w_q, w1, b1 = np.asarray(dec["block0"]["self_attention"]["w_q"]), np.asarray(ffn["w"]), np.asarray(ffn["b"])
        w_out, b_out = np.asarray(dec["dense"]["w"]), np.asarray(dec["dense"]["b"])
        if init == "uniform":
            for w, fan_in in ((w_q, d), (w1, 64), (b1, 64), (w_out, d), (b_out, d)):
                assert np.abs(w).max() <= 1 / math.sqrt(fan_in)
                assert np.std(w) == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1 if w.ndim == 2 else 0.35)
        else:
            assert np.std(w_q) == pytest.approx(math.sqrt(2 / (2 * d)), rel=0.05)  # Var = 2 / (n_in + n_out)
            assert np.std(w_out) == pytest.approx(math.sqrt(2 / (d + v_tgt)), rel=0.05)
            assert not b1.any() and not b_out.any()


SMALL = {
    "seq2seq": Seq2SeqModel(embed=5, hidden=7, layers=2, dropout=0.0, init="normal", init_scale=0.8),
    "bahdanau": BahdanauModel(embed=5, hidden=7, layers=2, dropout=0.0, init="normal", init_scale=0.8),
    "transformer": TransformerModel(hidden=8, ffn_hidden=12, heads=2, blocks=2, dropout=0.0),
}


def small_model(vocab=6, seed=0, name="seq2seq", steps=4):
    model = ENCODER_DECODERS[name](SMALL[name], vocab, vocab, steps)
    return model, model.init(jax.random.PRNGKey(seed))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_decoder_is_causal_and_decodes_incrementally(name):
    """A step's logits depend on the tokens before it only: changing later decoder inputs
    leaves them alone (so teacher forcing trains what decoding runs); and decoding one token at
    a time (the Transformer from its key/value cache) gives the logits of the whole pass."""
    model, params = small_model(name=name)
    src = jnp.asarray([[4, 5, 3, 1]])
    memory = model.encode(params, src, jnp.asarray([3]))
    dec = jnp.asarray([[2, 4, 5, 4]])
    logits, _ = model.decode(params, memory, model.start(params, memory), dec)
    changed, _ = model.decode(params, memory, model.start(params, memory), dec.at[0, 2:].set(0))
    np.testing.assert_allclose(changed[0, :2], logits[0, :2], rtol=1e-6)
    assert not np.allclose(changed[0, 2:], logits[0, 2:])
    step_by_step, state = [], model.start(params, memory)
    for t in range(4):
        out, state = model.decode(params, memory, state, dec[:, t : t + 1])
        step_by_step.append(out[0, 0])
    np.testing.assert_allclose(np.stack(step_by_step), logits[0], rtol=1e-4, atol=1e-5)


def sequence_log_probs(model, params, src, src_len, seqs, steps):
    """Each candidate's log-likelihood under teacher forcing, all candidates in one jitted batch
    (padded to `steps`, the padding masked out)."""
    n = len(seqs)
    tokens = np.zeros((n, steps), np.int32)
    mask = np.zeros((n, steps), np.float32)
    for i, seq in enumerate(seqs):
        tokens[i, : len(seq)], mask[i, : len(seq)] = seq, 1.0
    dec = np.concatenate([np.full((n, 1), 2, np.int32), tokens[:, :-1]], axis=1)

    @jax.jit
    def log_probs(params, src, src_len, dec, tokens, mask):
        memory = model.encode(params, src, src_len)
        logits, _ = model.decode(params, memory, model.start(params, memory), dec)
        picked = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), tokens[..., None], axis=-1)[..., 0]
        return jnp.sum(picked * mask, axis=1)

    src, src_len = jnp.repeat(src, n, axis=0), jnp.repeat(src_len, n, axis=0)
    return np.asarray(log_probs(params, src, src_len, jnp.asarray(dec), jnp.asarray(tokens), jnp.asarray(mask)))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_beam_as_wide_as_all_prefixes_is_exhaustive_search(name):
    """Beam search with k = V^(T-1) keeps every prefix, so it must find the candidate with the
    best length-normalised score among all sequences that end in <eos> or run to T tokens."""
    vocab, steps, eos = 4, 3, 3
    candidates = []
    for seq in itertools.product(range(vocab), repeat=steps):
        cut = list(seq[: seq.index(eos) + 1]) if eos in seq else list(seq)
        if cut not in candidates:
            candidates.append(cut)
    for seed in range(3):
        model, params = small_model(vocab, seed, name, steps)
        src, src_len = jnp.asarray([[1, 2, 3]]), jnp.asarray([3])
        scores = sequence_log_probs(model, params, src, src_len, candidates, steps) / np.array([len(c) for c in candidates]) ** 0.75
        best = candidates[int(np.argmax(scores))]
        got = np.asarray(beam_search(model, params, src, src_len, steps, bos=2, eos=eos, pad=1, beam_size=vocab ** (steps - 1)))[0]
        got = list(got[: list(got).index(eos) + 1]) if eos in got else list(got)
        assert got == best, (seed, got, best)


def test_bleu_matches_hand_computed_values():
    assert bleu("va !".split(), "va !".split()) == 1.0
    # the book's "he's calm ." -> "il est <unk> ." (0.658): p1 = 3/4, p2 = 1/3, no brevity penalty
    assert math.isclose(bleu("il est <unk> .".split(), "il est calme .".split()), (3 / 4) ** 0.5 * (1 / 3) ** 0.25)
    assert round(bleu("il est <unk> .".split(), "il est calme .".split()), 3) == 0.658
    # "i'm home ." -> "je suis <unk> ." (0.512): the same precisions, brevity exp(1 - 5/4)
    assert round(bleu("je suis <unk> .".split(), "je suis chez moi .".split()), 3) == 0.512
    assert bleu("qui est mort ?".split(), "il est calme .".split()) == 0.0  # no bigram in common
    # clipping: "the" counts once against a reference with one "the": p1 = 2/4, p2 = 1/3
    assert math.isclose(bleu("the the the cat".split(), "the cat sat".split()), (2 / 4) ** 0.5 * (1 / 3) ** 0.25)
    # one token predicted: only unigrams count (1.0's min(k, len_pred))
    assert math.isclose(bleu(["va"], ["va", "!"]), math.exp(1 - 2 / 1) * 1.0)
    assert bleu([], ["va"]) == 0.0


def test_corpus_bleu_pools_counts_over_pairs():
    pair = ("je suis <unk> .".split(), "je suis chez moi .".split())
    assert math.isclose(corpus_bleu([pair[0]], [pair[1]]), bleu(*pair))
    preds, labels = ["va !".split(), "il est <unk> .".split()], ["va !".split(), "il est calme .".split()]
    # unigrams 2 + 3 of 2 + 4; bigrams 1 + 1 of 1 + 3; lengths 6 and 6
    expected = (5 / 6) ** 0.5 * (2 / 4) ** 0.25
    assert math.isclose(corpus_bleu(preds, labels), expected)


TINY_MODELS = {
    "seq2seq": {"name": "seq2seq", "embed": 16, "hidden": 32, "layers": 2, "dropout": 0.0},
    "bahdanau": {"name": "bahdanau", "embed": 16, "hidden": 32, "layers": 2, "dropout": 0.0},
    "transformer": {"name": "transformer", "hidden": 32, "ffn_hidden": 64, "heads": 4, "blocks": 2, "dropout": 0.0},
}


def tiny_config(tmp_path, model=TINY_MODELS["seq2seq"], **rest):
    f = tmp_path / "pairs.txt"
    f.write_text("".join(f"{en}\t{fr}\n" for en, fr in PAIRS))
    raw = {
        "name": "tiny_mt",
        "data": {"name": "fra_eng", "file": str(f), "num_steps": 7, "num_train": 16, "num_val": 4, "min_freq": 0,
                 "batch_size": 8, "beam_size": 2, "sentences": {"we see tea.": "nous voyons les thé !"}},
        "model": model,
        "loss": {"name": "masked_cross_entropy"},
        "optimizer": {"name": "adam", "lr": 0.01, "clip_norm": 1.0},
        "trainer": {"epochs": 120, "progress": "none"},
    } | rest
    return Config.model_validate(raw)


@pytest.fixture(scope="module", params=sorted(TINY_MODELS))
def trained(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mt")
    cfg = tiny_config(tmp_path, TINY_MODELS[request.param])
    return cfg, train(cfg, tmp_path / "run", plot=False), tmp_path / "run"


def test_a_tiny_translation_model_learns_its_pairs_with_the_masked_loss(trained):
    cfg, result, run_dir = trained
    first, last = result.rows[0], result.rows[-1]
    assert first["train/loss"] > 1.5 and last["train/loss"] < 0.05, (first, last)
    data = load_dataset(cfg.data, cfg.seed)
    # the loss is the mean over the valid target tokens, an independent numpy computation of it
    logits, _ = result.setup.model.apply(result.state.params, result.state.model_state, jax.tree_util.tree_map(jnp.asarray, data.x_val))
    log_p = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float64) if jax.config.jax_enable_x64 else logits, -1))
    labels, valid = data.y_val[:, :-1], data.y_val[:, -1]
    nll = [-log_p[b, t, labels[b, t]] for b in range(len(labels)) for t in range(valid[b])]
    assert math.isclose(last["val/loss"], float(np.mean(nll)), rel_tol=1e-4)
    summed = np.asarray(masked_cross_entropy(logits, jnp.asarray(data.y_val)))
    # float32 log-softmax over logits of tens: about 1e-7 absolute per token, near a zero loss
    assert math.isclose(summed.sum() / valid.sum(), float(np.mean(nll)), rel_tol=1e-5, abs_tol=1e-6)
    sources = [en for en, _ in PAIRS[:16]]
    got = translate(result.setup.model.translator, result.state.params, data.meta, sources)
    assert [" ".join(t) for t in got] == [preprocess(fr) for _, fr in PAIRS[:16]]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["translations"][0]["source"] == "we see tea." and "bleu" in summary["translations"][0]
    assert summary["bleu"]["pairs"] == 4 and {"greedy", "beam2"} <= set(summary["bleu"])


def test_beam_search_of_width_one_is_greedy_decoding(trained):
    cfg, result, _ = trained
    data = load_dataset(cfg.data, cfg.seed)
    translator, params = result.setup.model.translator, result.state.params
    src, src_len = (jnp.asarray(np.concatenate([data.x_train[k], data.x_val[k]])) for k in ("src", "src_len"))
    greedy = greedy_decode(translator, params, src, src_len, 7, bos=2)
    beam = beam_search(translator, params, src, src_len, 7, bos=2, eos=3, pad=1, beam_size=1)
    for g, b in zip(np.asarray(greedy), np.asarray(beam)):
        end = list(g).index(3) + 1 if 3 in g else len(g)
        np.testing.assert_array_equal(b[:end], g[:end])


def test_predict_translates_and_refuses_what_does_not_fit(trained):
    _, _, run_dir = trained
    out = runner.invoke(app, ["predict", str(run_dir), "i see cats.", "he see tea.", "--beam", "2"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == ["i see cats. => je vois les chats !", "he see tea. => il voit les thé !"]
    wrong = runner.invoke(app, ["predict", str(run_dir), "--prefix", "i see"])
    assert wrong.exit_code == 2 and "translation run" in wrong.output and "--prefix" in wrong.output
    none = runner.invoke(app, ["predict", str(run_dir)])
    assert none.exit_code == 2 and "give the sentences" in none.output


def test_predict_needs_a_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text(cfg.model_dump_json())
    out = runner.invoke(app, ["predict", str(tmp_path / "empty"), "go ."])
    assert out.exit_code == 2 and "no checkpoint" in out.output
    out = runner.invoke(app, ["predict", str(tmp_path / "nowhere"), "go ."])
    assert out.exit_code == 2 and "not a run directory" in out.output


def test_attention_heatmaps_show_weights_over_the_valid_source(trained, tmp_path):
    from dlrun.core.report.plots import plot_heatmaps
    from dlrun.core.training.translate import attention_panels

    cfg, result, _ = trained
    data = load_dataset(cfg.data, cfg.seed)
    rows = attention_panels(result.setup.model.translator, result.state.params, data.meta, ["i see cats.", "he see tea."])
    if cfg.model.name == "seq2seq":
        assert rows == []  # no attention to show
        return
    for row in rows:
        for _, weights, queries, keys in row:
            assert weights.shape == (len(queries), len(keys))
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)  # all the weight on the valid source
    keys = ["he", "see", "tea", ".", "<eos>"]
    if cfg.model.name == "transformer":  # the last sentence: encoder blocks x heads, then decoder blocks x heads
        assert len(rows) == 4 and len(rows[0]) == 4 and rows[0][0][2] == rows[0][0][3] == keys
        assert rows[-1][0][2] == ["il", "voit", "les", "thé", "!", "<eos>"]
    else:  # one panel per sentence
        assert len(rows) == 1 and rows[0][1][3] == keys and rows[0][1][2] == ["il", "voit", "les", "thé", "!", "<eos>"]
    plot_heatmaps(tmp_path / "attention.png", rows)
    assert (tmp_path / "attention.png").stat().st_size > 10000


def test_a_sweep_over_dropout_and_lr_trains_transformers_as_one_group(tmp_path):
    """The dropout rate lives in the model state, so trials that differ in it and in the
    learning rate share one program, and each gives what it gives alone."""
    import pandas as pd

    from dlrun.core.report.progress import make_reporter
    from dlrun.core.sweep.groups import group_key
    from dlrun.core.training.vectorised import train_group

    model = TINY_MODELS["transformer"]
    base = {"trainer": {"epochs": 3, "progress": "none"}}
    cfgs = [tiny_config(tmp_path, model | {"dropout": 0.1}, **base),
            tiny_config(tmp_path, model | {"dropout": 0.3}, optimizer={"name": "adam", "lr": 0.003, "clip_norm": 1.0}, **base)]
    assert len({group_key(c) for c in cfgs}) == 1
    outcomes = train_group(cfgs, [tmp_path / f"v{i}" for i in range(2)], mode="serial")
    assert [o.status for o in outcomes] == ["done"] * 2 and outcomes[0].summary["loop"] == "shared-program"
    columns = ["train/loss", "val/loss", "val/acc"]
    finals = []
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"s{i}", plot=False, reporter=make_reporter("none", 0, ""))
        vec, single = (pd.read_csv(tmp_path / f"{p}{i}" / "metrics.csv")[columns].to_numpy() for p in "vs")
        np.testing.assert_allclose(vec, single, rtol=2e-4, atol=2e-5, err_msg=str(i))
        finals.append(round(float(vec[-1, 0]), 4))
    assert len(set(finals)) == 2  # the trials really differ
