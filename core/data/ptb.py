"""The Penn Treebank as word2vec's training data (D2L 14.3): reading, subsampling, context
windows, noise words and padded batches.

Each step that the book draws with Python's `random` is here a pure function of the draws it
is given (uniform numbers, window sizes, candidate noise words), so that a test can feed the
same draws to a literal port of the book's code; `draw_examples` makes those draws from one
numpy generator seeded with the run's seed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .files import RemoteFile
from .text import D2L_DATA_URL, Vocab

PTB = RemoteFile("ptb.zip", D2L_DATA_URL + "ptb.zip", "319d85e578af0cdc590547f26231e4e31cdf1e42")
PTB_TRAIN = "ptb/ptb.train.txt"  # the member of ptb.zip the book trains on
MAX_DRAWS = 50  # rounds of candidates a centre word may need before its vocabulary is deemed too small


def read_ptb(path: Path) -> list[list[str]]:
    """The sentences of PTB's training file, each a list of words (the book's `read_ptb`).
    `path` is ptb.zip or an extracted ptb.train.txt. Like the book, the file's final newline
    gives one last empty sentence (42,069 sentences in all)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                raw = zf.read(PTB_TRAIN).decode("utf-8")
        else:
            raw = path.read_text(encoding="utf-8")
    except KeyError:
        raise ValueError(f"{path}: the archive has no member {PTB_TRAIN}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    return [line.split() for line in raw.split("\n")]


def ptb_vocab(sentences: Sequence[Sequence[str]], min_freq: int) -> Vocab:
    """The book's vocabulary: `<unk>` (index 0) for words seen fewer than `min_freq` times."""
    return Vocab((t for line in sentences for t in line), min_freq)


class Corpus(NamedTuple):
    """A corpus of token ids, flattened: `ids[i]` belongs to sentence `sentence[i]`."""

    ids: np.ndarray  # (tokens,) int32
    sentence: np.ndarray  # (tokens,) int64, non-decreasing


def known_tokens(sentences: Sequence[Sequence[str]], vocab: Vocab) -> tuple[Corpus, np.ndarray]:
    """The sentences' ids with every `<unk>` left out (the book's first step of `subsample`),
    and each id's count among them, (len(vocab),) int64."""
    ids = [[vocab[t] for t in line] for line in sentences]
    flat = np.fromiter((i for line in ids for i in line), np.int32)
    sent = np.repeat(np.arange(len(ids)), [len(line) for line in ids])
    keep = flat != vocab.unk
    corpus = Corpus(flat[keep], sent[keep])
    return corpus, np.bincount(corpus.ids, minlength=len(vocab)).astype(np.int64)


def subsample(corpus: Corpus, counts: np.ndarray, uniforms: np.ndarray, t: float = 1e-4) -> Corpus:
    """Keep token w when u < sqrt(t / f(w)), f its share of the corpus (D2L 14.3.2), u its
    draw from `uniforms`, (tokens,) in [0, 1)."""
    f = counts[corpus.ids] / counts.sum()
    keep = uniforms < np.sqrt(t / f)
    return Corpus(corpus.ids[keep], corpus.sentence[keep])


def centers_and_contexts(corpus: Corpus, window_sizes: np.ndarray, max_window_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each token of a sentence of at least 2 tokens as a centre, its context the tokens of its
    sentence at most `window_sizes[i]` (1..max_window_size, one per token) away, in order
    (D2L 14.3.3, `get_centers_and_contexts`).

    Returns:
        centers (n,) int32 and contexts (n, 2 * max_window_size) int32, padded with -1 after
        each row's context words.
    """
    sizes = np.bincount(corpus.sentence)[corpus.sentence]
    rows = np.flatnonzero(sizes >= 2)
    n = len(corpus.ids)
    offsets = np.concatenate([np.arange(-max_window_size, 0), np.arange(1, max_window_size + 1)])
    j = rows[:, None] + offsets[None, :]
    inside = (j >= 0) & (j < n)
    j = np.clip(j, 0, n - 1)
    valid = inside & (corpus.sentence[j] == corpus.sentence[rows][:, None])
    valid &= np.abs(offsets)[None, :] <= window_sizes[rows][:, None]
    order = np.argsort(~valid, axis=1, kind="stable")  # the valid ones first, still in order
    contexts = np.where(np.take_along_axis(valid, order, 1), np.take_along_axis(corpus.ids[j], order, 1), -1)
    return corpus.ids[rows].astype(np.int32), contexts.astype(np.int32)


def noise_weights(counts: np.ndarray) -> np.ndarray:
    """P(w) proportional to count(w)^0.75 over ids 1.. (D2L 14.3.4); `<unk>` (0) is never drawn."""
    w = counts.astype(np.float64) ** 0.75
    w[0] = 0.0
    return w / w.sum()


def negatives(contexts: np.ndarray, candidates: np.ndarray, num_noise_words: int) -> tuple[np.ndarray, np.ndarray]:
    """K noise words per context word: each row takes its first candidates that are not among its
    context words (the book's `get_negatives`, on each row's own stream of draws).

    Args:
        contexts: (n, c) int32, -1 padded.
        candidates: (n, m) int32 draws from `noise_weights`.
    Returns:
        negatives (n, c * K) int32, padded with -1 after each row's K * len(context) words, and
        (n,) bool: whether the row found enough candidates (else draw more for it).
    """
    need = (contexts >= 0).sum(1) * num_noise_words
    ok = ~(candidates[:, :, None] == contexts[:, None, :]).any(2)
    rank = np.cumsum(ok, axis=1) - 1
    take = ok & (rank < need[:, None])
    out = np.full((len(contexts), contexts.shape[1] * num_noise_words), -1, np.int32)
    r, c = np.nonzero(take)
    out[r, rank[r, c]] = candidates[r, c]
    return out, take.sum(1) == need


def batchify(centers: np.ndarray, contexts: np.ndarray, negs: np.ndarray, max_len: int | None = None) -> dict[str, np.ndarray]:
    """Padded examples (D2L 14.3.5, `batchify`): each row's context words, then its noise words,
    then zeros up to `max_len` (default: the longest row); `mask` marks the words, `label` the
    context words.

    Returns:
        {"center": (n,), "contexts_negatives": (n, max_len) int32, "mask", "label": (n, max_len) float32}.
    """
    both = np.concatenate([contexts, negs], axis=1)
    valid = both >= 0
    order = np.argsort(~valid, axis=1, kind="stable")
    cn = np.take_along_axis(np.where(valid, both, 0), order, 1)
    lengths = valid.sum(1)
    max_len = int(lengths.max()) if max_len is None else max_len
    pos = np.arange(max_len)[None, :]
    cn = np.pad(cn, ((0, 0), (0, max(0, max_len - cn.shape[1]))))[:, :max_len]
    return {"center": centers.astype(np.int32), "contexts_negatives": cn.astype(np.int32),
            "mask": (pos < lengths[:, None]).astype(np.float32),
            "label": (pos < (contexts >= 0).sum(1)[:, None]).astype(np.float32)}


def pad_lists(rows: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Lists of ids as an (n, width) int32 array padded with -1."""
    width = max(map(len, rows), default=0) if width is None else width
    out = np.full((len(rows), width), -1, np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def draw_negatives(contexts: np.ndarray, weights: np.ndarray, num_noise_words: int, rng: np.random.Generator,
                   chunk: int = 20_000) -> np.ndarray:
    """`negatives` with candidates drawn from `rng`, twice as many as a row needs, `chunk` rows
    at a time (to bound memory); the few rows whose candidates were mostly their own context
    words draw again."""
    negs = np.full((len(contexts), contexts.shape[1] * num_noise_words), -1, np.int32)
    m = 2 * contexts.shape[1] * num_noise_words
    cdf = np.cumsum(weights)
    for start in range(0, len(contexts), chunk):
        todo = np.arange(start, min(start + chunk, len(contexts)))
        for _ in range(MAX_DRAWS):
            if not len(todo):
                break
            cand = np.minimum(np.searchsorted(cdf, rng.random((len(todo), m)) * cdf[-1], side="right"),
                              len(weights) - 1).astype(np.int32)
            got, done = negatives(contexts[todo], cand, num_noise_words)
            negs[todo[done]] = got[done]
            todo = todo[~done]
        if len(todo):
            raise ValueError(f"no noise words for {len(todo)} centre words after {MAX_DRAWS} draws: the vocabulary "
                             f"({len(weights)} words) has too few besides their context words")
    return negs


def draw_examples(sentences: Sequence[Sequence[str]], vocab: Vocab, seed: int, max_window_size: int,
                  num_noise_words: int, t: float = 1e-4) -> tuple[dict[str, np.ndarray], dict]:
    """The book's `load_data_ptb` before its data loader: subsampling, windows and noise words
    drawn once from a numpy generator seeded with `seed`; rows padded to the longest of all."""
    rng = np.random.default_rng(seed)
    corpus, counts = known_tokens(sentences, vocab)
    kept = subsample(corpus, counts, rng.random(len(corpus.ids)), t)
    windows = rng.integers(1, max_window_size + 1, size=len(kept.ids))
    centers, contexts = centers_and_contexts(kept, windows, max_window_size)
    negs = draw_negatives(contexts, noise_weights(counts), num_noise_words, rng)
    facts = {"num_tokens": len(corpus.ids), "num_subsampled": len(kept.ids),
             "num_pairs": int((contexts >= 0).sum())}
    return batchify(centers, contexts, negs), facts
