"""PTB for word2vec (D2L 14.3) against literal ports of the book's functions, fed the same draws."""

from __future__ import annotations

import collections
import math
import os
from pathlib import Path

import numpy as np
import pytest

from dlrun.core.data.ptb import (
    Corpus,
    batchify,
    centers_and_contexts,
    draw_examples,
    known_tokens,
    negatives,
    noise_weights,
    pad_lists,
    ptb_vocab,
    read_ptb,
    subsample,
)

TEXT = ("the cat sat on the mat\nthe dog sat on the log\na cat and a dog\n"
        "the end\nrare\non the mat the cat sat\n")


# ------------------------------------------------------------------ the book's code, draws given


class BookVocab:
    """The 0.16 edition's `d2l.Vocab`: <unk> first, then by descending frequency."""

    def __init__(self, tokens, min_freq):
        counter = collections.Counter(tokens)
        freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        self.idx_to_token = ["<unk>"]
        self.token_to_idx = {"<unk>": 0}
        for token, freq in freqs:
            if freq < min_freq:
                break
            if token not in self.token_to_idx:
                self.idx_to_token.append(token)
                self.token_to_idx[token] = len(self.idx_to_token) - 1
        self.unk = 0

    def __getitem__(self, token):
        return self.token_to_idx.get(token, 0)


def book_subsample(sentences, vocab, uniforms):
    sentences = [[t for t in line if vocab[t] != vocab.unk] for line in sentences]
    counter = collections.Counter([t for line in sentences for t in line])
    num_tokens = sum(counter.values())
    draws = iter(uniforms)

    def keep(token):
        return next(draws) < math.sqrt(1e-4 / counter[token] * num_tokens)

    return [[t for t in line if keep(t)] for line in sentences], counter


def book_centers_and_contexts(corpus, windows):
    """`windows[s][i]`: the window the book's random.randint draws for token i of sentence s."""
    centers, contexts = [], []
    for s, line in enumerate(corpus):
        if len(line) < 2:
            continue
        centers += line
        for i in range(len(line)):
            w = windows[s][i]
            indices = list(range(max(0, i - w), min(len(line), i + 1 + w)))
            indices.remove(i)
            contexts.append([line[idx] for idx in indices])
    return centers, contexts


def book_negatives(all_contexts, candidates, K):
    """The book's `get_negatives` with each row drawing from its own list of candidates."""
    all_negatives = []
    for contexts, stream in zip(all_contexts, candidates):
        draws, negatives_ = iter(stream), []
        while len(negatives_) < len(contexts) * K:
            neg = next(draws)
            if neg not in contexts:
                negatives_.append(neg)
        all_negatives.append(negatives_)
    return all_negatives


def book_batchify(data):
    max_len = max(len(c) + len(n) for _, c, n in data)
    centers, contexts_negatives, masks, labels = [], [], [], []
    for center, context, negative in data:
        cur_len = len(context) + len(negative)
        centers += [center]
        contexts_negatives += [context + negative + [0] * (max_len - cur_len)]
        masks += [[1] * cur_len + [0] * (max_len - cur_len)]
        labels += [[1] * len(context) + [0] * (max_len - len(context))]
    return np.array(centers), np.array(contexts_negatives), np.array(masks), np.array(labels)


# ------------------------------------------------------------------ tests


@pytest.fixture
def sentences(tmp_path) -> list[list[str]]:
    (tmp_path / "ptb.train.txt").write_text(TEXT)
    return read_ptb(tmp_path / "ptb.train.txt")


def test_reader_keeps_the_books_last_empty_sentence(sentences, tmp_path):
    assert len(sentences) == TEXT.count("\n") + 1 and sentences[-1] == [] and sentences[0][:2] == ["the", "cat"]
    import zipfile

    with zipfile.ZipFile(tmp_path / "ptb.zip", "w") as zf:
        zf.writestr("ptb/ptb.train.txt", TEXT)
    assert read_ptb(tmp_path / "ptb.zip") == sentences
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("x.txt", TEXT)
    with pytest.raises(ValueError, match="other.zip.*ptb/ptb.train.txt"):
        read_ptb(tmp_path / "other.zip")


def test_vocab_matches_the_books(sentences):
    ours, book = ptb_vocab(sentences, 2), BookVocab([t for line in sentences for t in line], 2)
    assert ours.idx_to_token == book.idx_to_token and "rare" not in ours.idx_to_token


def test_subsampling_with_the_same_uniforms(sentences):
    vocab = ptb_vocab(sentences, 2)
    corpus, counts = known_tokens(sentences, vocab)
    # keep probabilities sqrt(1e-4 / f) are about 0.017-0.033 here: small draws keep some words, not all
    u = np.random.default_rng(0).random(len(corpus.ids)) * 0.04
    kept = subsample(corpus, counts, u, t=1e-4)
    book, counter = book_subsample(sentences, BookVocab([t for line in sentences for t in line], 2), u)
    assert [vocab.tokens(kept.ids[kept.sentence == s]) for s in range(len(sentences))] == book
    assert all(counts[vocab[w]] == c for w, c in counter.items())
    assert 0 < len(kept.ids) < len(corpus.ids)


def test_windows_with_the_same_draws():
    corpus = [list(range(7)), [9], list(range(7, 10)), [11, 12]]
    rng = np.random.default_rng(1)
    windows = [list(rng.integers(1, 3, len(line))) for line in corpus]
    flat = Corpus(np.concatenate(corpus).astype(np.int32), np.repeat(np.arange(len(corpus)), [len(x) for x in corpus]))
    centers, contexts = centers_and_contexts(flat, np.concatenate(windows), 2)
    book_c, book_ctx = book_centers_and_contexts(corpus, windows)
    assert centers.tolist() == book_c
    assert [row[row >= 0].tolist() for row in contexts] == book_ctx


def test_negatives_with_the_same_candidates():
    rng = np.random.default_rng(2)
    contexts = [[1, 2], [3], [1, 2, 3, 4], [5]]
    candidates = rng.integers(1, 7, size=(4, 40)).astype(np.int32)
    ours, done = negatives(pad_lists(contexts, 4), candidates, 3)
    assert done.all()
    assert [row[row >= 0].tolist() for row in ours] == book_negatives(contexts, candidates.tolist(), 3)
    _, done = negatives(pad_lists([[1]], 1), np.ones((1, 5), np.int32), 2)  # every candidate is the context word
    assert not done[0]


def test_noise_weights_are_the_books():
    counts = np.array([100, 7, 3, 1], np.int64)
    w = noise_weights(counts)
    book = np.array([counts[i] ** 0.75 for i in range(1, 4)])
    np.testing.assert_allclose(w[1:], book / book.sum(), rtol=1e-12)
    assert w[0] == 0


def test_batchify_reproduces_the_books_example():
    examples = ((1, [2, 2], [3, 3, 3, 3]), (1, [2, 2, 2], [3, 3]))
    b = batchify(np.array([1, 1]), pad_lists([c for _, c, _ in examples]), pad_lists([n for _, _, n in examples]))
    centers, cn, masks, labels = book_batchify(examples)
    assert b["center"].tolist() == centers.tolist()
    assert b["contexts_negatives"].tolist() == cn.tolist() == [[2, 2, 3, 3, 3, 3], [2, 2, 2, 3, 3, 0]]
    assert b["mask"].tolist() == masks.tolist() and b["label"].tolist() == labels.tolist()


def test_drawn_examples_are_consistent(sentences):
    vocab = ptb_vocab(sentences, 1)
    ex, facts = draw_examples(sentences, vocab, seed=0, max_window_size=2, num_noise_words=3, t=1.0)
    assert ex["contexts_negatives"].shape == (len(ex["center"]), 2 * 2 * 4)
    n_ctx, n_all = ex["label"].sum(1), ex["mask"].sum(1)
    np.testing.assert_array_equal(n_all, 4 * n_ctx)
    assert facts["num_pairs"] == n_ctx.sum() and (ex["label"] <= ex["mask"]).all()
    ids, valid = ex["contexts_negatives"], ex["mask"] > 0
    assert (ids[~valid] == 0).all() and (ids[valid & (ex["label"] == 0)] > 0).all()  # <unk> is never noise
    again, _ = draw_examples(sentences, vocab, seed=0, max_window_size=2, num_noise_words=3, t=1.0)
    other, _ = draw_examples(sentences, vocab, seed=1, max_window_size=2, num_noise_words=3, t=1.0)
    assert all((again[k] == ex[k]).all() for k in ex)
    assert not all(other[k].shape == ex[k].shape and (other[k] == ex[k]).all() for k in ex)


PTB_ZIP = Path(os.environ.get("DLRUN_DATA_DIR", "/nonexistent")) / "ptb.zip"


@pytest.mark.skipif(not PTB_ZIP.is_file(), reason="ptb.zip is not in DLRUN_DATA_DIR")
def test_ptb_numbers_the_book_prints(tmp_path, monkeypatch):
    from dlrun.core.config import load_config
    from dlrun.experiments import word2vec_data

    monkeypatch.setenv("DLRUN_OFFLINE", "1")
    cfg = load_config(Path(__file__).parent.parent / "configs" / "ptb_word2vec_data.yaml")
    summary = word2vec_data.run(cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"progress": "none"})}), tmp_path)
    assert summary["max_difference"] == 0
    assert summary["ours"] == {"sentences": 42069, "vocab": 6719, "before": {"the": 50770, "join": 45}}
    assert summary["subsampling"]["join"]["after"] == 45 and summary["subsampling_within"]
    assert (tmp_path / "summary.json").is_file()


def test_bad_ptb_files_are_named(tmp_path):
    from dlrun.core.config.word2vec import PTBWord2VecData
    from dlrun.core.data.word2vec import ptb_word2vec
    from dlrun.core.errors import DataError, DataNotFoundError

    with pytest.raises(DataNotFoundError, match="data.file: .*none.txt not found"):
        ptb_word2vec(PTBWord2VecData(file=str(tmp_path / "none.txt")), 0)
    (tmp_path / "one.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="one.txt: no sentence of 2 or more words"):
        ptb_word2vec(PTBWord2VecData(file=str(tmp_path / "one.txt")), 0)
    (tmp_path / "two.txt").write_text("a a\n")  # the one word is its own context: no noise word to draw
    with pytest.raises(DataError, match="two.txt: no noise words .*data.min_freq: 1"):
        ptb_word2vec(PTBWord2VecData(file=str(tmp_path / "two.txt"), min_freq=1, subsample_t=1.0), 0)
