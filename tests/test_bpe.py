"""Byte pair encoding (D2L 14.6): the book's merges, symbols and segmentations against a plain
port of the book's code and its printed output; learned merges on a real corpus against the same
port; the subword tokenizer's round trip; The Time Machine as subwords, its char and word tokens
unchanged; a tiny language model on subwords whose continuation decodes to text."""

import collections
import json
import re

import numpy as np
import pytest

from dlrun.core.config import Config
from dlrun.core.config.data import TimeMachineData
from dlrun.core.data import bpe
from dlrun.core.data.text import clean, decode, encode, language_model_data, tokenize

# ----------------------------------------------------------- the book's code, ported line by line


def book_get_max_freq_pair(token_freqs):
    pairs = collections.defaultdict(int)
    for token, freq in token_freqs.items():
        symbols = token.split()
        for i in range(len(symbols) - 1):
            pairs[symbols[i], symbols[i + 1]] += freq
    return max(pairs, key=pairs.get)


def book_merge_symbols(max_freq_pair, token_freqs, symbols):
    symbols.append("".join(max_freq_pair))
    new_token_freqs = {}
    for token, freq in token_freqs.items():
        new_token = token.replace(" ".join(max_freq_pair), "".join(max_freq_pair))
        new_token_freqs[new_token] = freq
    return new_token_freqs


def book_segment_BPE(tokens, symbols):
    outputs = []
    for token in tokens:
        start, end = 0, len(token)
        cur_output = []
        while start < len(token) and start < end:
            if token[start:end] in symbols:
                cur_output.append(token[start:end])
                start = end
                end = len(token)
            else:
                end -= 1
        if start < len(token):
            cur_output.append("[UNK]")
        outputs.append(" ".join(cur_output))
    return outputs


def book_learn(raw_token_freqs, num_merges):
    symbols = list("abcdefghijklmnopqrstuvwxyz") + ["_", "[UNK]"]
    token_freqs = {" ".join(list(t)): f for t, f in raw_token_freqs.items()}
    merges = []
    for _ in range(num_merges):
        pair = book_get_max_freq_pair(token_freqs)
        token_freqs = book_merge_symbols(pair, token_freqs, symbols)
        merges.append(pair)
    return merges, symbols, token_freqs


BOOK_PRINTED = {  # D2L 14.6.2's printed output
    "merges": [("t", "a"), ("ta", "l"), ("tal", "l"), ("f", "a"), ("fa", "s"), ("fas", "t"), ("e", "r"), ("er", "_"),
               ("tall", "_"), ("fast", "_")],
    "token_freqs": ["fast_", "fast er_", "tall_", "tall er_"],
    "segment_BPE": ["tall e s t _", "fa t t er_"],
}
RAW = {"fast_": 4, "faster_": 3, "tall_": 5, "taller_": 4}

# ---------------------------------------------------------------------------------- D2L 14.6


def test_the_port_of_the_books_code_prints_what_the_book_prints():
    merges, symbols, token_freqs = book_learn(RAW, 10)
    assert merges == BOOK_PRINTED["merges"]
    assert list(token_freqs) == BOOK_PRINTED["token_freqs"]
    assert book_segment_BPE(["tallest_", "fatter_"], symbols) == BOOK_PRINTED["segment_BPE"]


def test_the_book_steps_match_the_port_and_the_books_print():
    from experiments.bpe import BOOK, book_steps

    ours = book_steps()
    merges, symbols, token_freqs = book_learn(RAW, 10)
    assert [tuple(p) for p in ours["merges"]] == merges == [tuple(p) for p in BOOK["merges"]]
    assert ours["symbols"] == symbols == BOOK["symbols"]
    assert ours["token_freqs"] == list(token_freqs) == BOOK["token_freqs"]
    assert ours["segment_BPE"] == BOOK_PRINTED["segment_BPE"] == BOOK["segment_BPE"]
    learned = bpe.learn(RAW, 10)
    assert list(learned.pairs) == merges and list(learned.symbols) == symbols
    assert [" ".join(s) for s, _ in learned.words] == list(token_freqs)
    assert [f for _, f in learned.words] == list(token_freqs.values())


def test_ties_go_to_the_first_pair_counted_as_the_books_max_picks():
    # ('t', 'a'), ('a', 'l') and ('l', 'l') tie at 9 in the book's first merge; ('t', 'a') is counted first
    assert bpe.pair_counts((tuple(w), f) for w, f in RAW.items())[("a", "l")] == 9
    for raw in ({"ab_": 1, "ba_": 1}, {"ba_": 1, "ab_": 1}, {"xyz_": 2, "zyx_": 2, "yx_": 1}):
        assert list(bpe.learn(raw, 4).pairs) == book_learn(raw, 4)[0], raw
    assert bpe.learn({"ba_": 1, "ab_": 1}, 1).pairs == (("b", "a"),)


def test_pairs_merge_as_whole_symbols_where_the_books_substring_replace_would_not():
    assert bpe.merge_word(("a", "b"), ("ca", "b", "a", "b")) == ("ca", "b", "ab")
    assert "ca b a b".replace("a b", "ab") == "cab ab"  # the book's replace joins 'ca' and 'b' too
    assert bpe.merge_word(("a", "a"), ("a", "a", "a")) == ("aa", "a")  # left to right, as str.replace


def sennrich_merge_symbols(max_freq_pair, token_freqs, symbols):
    """The book's `merge_symbols` with the pair matched only between whole symbols, as in
    Sennrich et al.'s reference code (subword-nmt's `(?<!\\S)a b(?!\\S)`)."""
    symbols.append("".join(max_freq_pair))
    pattern = re.compile(r"(?<!\S)" + re.escape(" ".join(max_freq_pair)) + r"(?!\S)")
    return {pattern.sub("".join(max_freq_pair), token): freq for token, freq in token_freqs.items()}


def test_learned_merges_on_a_real_corpus_match_the_books_algorithm(d2l_data_dir):
    words = clean((d2l_data_dir / "timemachine.txt").read_text())[:20000].split()
    raw = bpe.word_freqs(words)
    symbols, token_freqs, merges = list(bpe.BOOK_SYMBOLS), {" ".join(w): f for w, f in raw.items()}, []
    for _ in range(60):
        merges.append(book_get_max_freq_pair(token_freqs))
        token_freqs = sennrich_merge_symbols(merges[-1], token_freqs, symbols)
    learned = bpe.learn(raw, 60)
    assert list(learned.pairs) == merges and list(learned.symbols) == symbols
    assert [" ".join(s) for s, _ in learned.words] == list(token_freqs)
    # the literal port's substring replace parts ways here: ('t', 'i') also joins 't in' of "distinction"
    assert book_learn(raw, 29)[0] != merges[:29] and book_learn(raw, 28)[0] == merges[:28]


def test_segmentation_is_the_books_longest_match():
    rng = np.random.default_rng(0)
    _, symbols, _ = book_learn(RAW, 10)
    words = ["".join(rng.choice(list("aeflrst_"), size=rng.integers(1, 9))) for _ in range(300)] + ["fat9er_", ""]
    assert bpe.segment_BPE(words, symbols) == book_segment_BPE(words, symbols)
    assert bpe.segment_BPE(["fat9er_"], symbols) == ["fa t [UNK]"]


def test_experiment_reports_zero_difference_and_counts_each_mismatch(tmp_path):
    from experiments.bpe import mismatches, run

    cfg = Config.model_validate({"name": "bpe", "experiment": {"name": "bpe"}, "trainer": {"progress": "none"}})
    summary = run(cfg, tmp_path)
    assert summary["max_difference"] == 0
    assert json.loads((tmp_path / "summary.json").read_text())["max_difference"] == 0
    assert (tmp_path / "bpe.txt").read_text().splitlines()[0] == "merge #1: ('t', 'a')"
    assert mismatches(["a", "b", "c"], ["a", "x"]) == 2


# ------------------------------------------------------------------------ the subword tokenizer


def test_encode_then_decode_gives_back_the_corpus(d2l_data_dir):
    text = clean((d2l_data_dir / "timemachine.txt").read_text())
    words = text.split()
    learned = bpe.learn(bpe.word_freqs(words), 30)
    tokens = bpe.encode(words, learned.symbols)
    assert bpe.decode(tokens) == "".join(w + " " for w in words)
    assert set(tokens) <= set(learned.symbols) and len(words) < len(tokens) < len(text)
    assert decode(encode(" the time  traveller ", "bpe", learned.symbols), "bpe") == "the time traveller"


def test_tokens_before_any_merge_are_characters_and_end_markers():
    assert tokenize("ab c", "bpe") == ["a", "b", "_", "c", "_"]
    assert bpe.encode(["ab", "c"], bpe.BOOK_SYMBOLS) == tokenize("ab c", "bpe")
    assert decode(["tall", "er_", "m", "an_"], "bpe") == "taller man"


def lm_cfg(tmp_path, text, **data):
    f = tmp_path / "text.txt"
    f.write_text(text)
    return Config.model_validate({"data": {"name": "time_machine", "file": str(f), **data}, "model": {"name": "rnn_lm"}}).data


def test_time_machine_as_subwords_has_the_learned_symbols_as_its_vocabulary(tmp_path):
    text = "The taller man ran faster; the tallest ran fastest. " * 30
    cfg = lm_cfg(tmp_path, text, token="bpe", merges=12, num_steps=4, num_train=40, num_val=10, batch_size=8)
    data = language_model_data(text, cfg)
    learned = bpe.learn(bpe.word_freqs(clean(text).split()), 12)
    vocab = data.meta["vocab"]
    assert vocab[0] == "<unk>" and sorted(vocab[1:]) == sorted(set(learned.symbols) - {"[UNK]"})
    assert data.num_classes == len(vocab) == 1 + 27 + 12 and data.meta["token"] == "bpe"
    expected = bpe.encode(clean(text).split(), learned.symbols)
    assert [vocab[i] for i in data.x_train[0]] == expected[:4] and [vocab[i] for i in data.y_train[0]] == expected[1:5]
    assert data.meta["corpus_tokens"] == len(expected)


@pytest.mark.parametrize("token", ["char", "word"])
def test_char_and_word_tokens_are_unchanged(tmp_path, token):
    text = "the quick brown fox jumps over the lazy dog and the time machine " * 10
    cfg = lm_cfg(tmp_path, text, token=token, num_steps=5, num_train=30, num_val=10, batch_size=5)
    data = language_model_data(text, cfg)
    tokens = list(clean(text)) if token == "char" else clean(text).split()
    counts = collections.Counter(tokens)
    order = ["<unk>"] + sorted(counts, key=lambda t: (-counts[t], tokens.index(t)))  # frequency, then first seen
    ids = np.array([order.index(t) for t in tokens])
    assert data.meta["vocab"] == order
    np.testing.assert_array_equal(data.x_train, np.stack([ids[i : i + 5] for i in range(30)]))
    assert TimeMachineData().token == "char"


def test_a_language_model_on_subwords_continues_text_decoded_back(tmp_path):
    from dlrun.core.data import load_dataset
    from dlrun.core.nn.rnn import greedy_continuation
    from dlrun.core.training.train import train

    f = tmp_path / "text.txt"
    f.write_text("the time machine " * 40)
    cfg = Config.model_validate({
        "name": "tiny_bpe", "data": {"name": "time_machine", "file": str(f), "token": "bpe", "merges": 12, "num_steps": 4,
                                     "num_train": 60, "num_val": 20, "batch_size": 20, "prefix": "the", "predict_tokens": 5},
        "model": {"name": "rnn_lm", "cell": "gru", "impl": "fused", "hidden": 16, "init": "uniform"},
        "optimizer": {"name": "adam", "lr": 0.05, "clip_norm": 1.0}, "trainer": {"epochs": 30, "progress": "none"}})
    data = load_dataset(cfg.data, cfg.seed)
    vocab = data.meta["vocab"]
    assert {"the_", "time_", "machine_"} <= set(vocab)  # 12 merges spell the three words
    assert data.meta["corpus_tokens"] == 120
    result = train(cfg, tmp_path / "run", plot=False, data=data)
    assert result.rows[-1]["train/ppl"] < 1.2, result.rows[-1]
    prefix = [vocab.index(t) for t in encode("the", "bpe", vocab)]
    ids = greedy_continuation(result.setup.model.apply, result.state.params, result.state.model_state, prefix, 5)
    assert decode([vocab[i] for i in ids], "bpe") == "the time machine the time machine"
