"""Text as data (D2L 9.2-9.3): cleaning, tokens, a vocabulary, corpus statistics, and The Time
Machine as a language-modelling data set, of characters, words or byte-pair-encoded subwords
(D2L 14.6, `core.data.bpe`).

A language-model data set holds every window of `num_steps` tokens of the corpus (stride 1) as
an example, its target the window shifted by one token. How an epoch walks through them is the
data set's `Sampling` (`core.data.sampling`): shuffled windows (the 1.0 edition), or the 0.16
edition's random and sequential partitioning of the corpus, which pick windows from the same
array, so every partitioning trains through the one loop.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError
from . import bpe
from .dataset import Dataset
from .files import RemoteFile, find_or_fetch
from .sampling import Sampling

D2L_DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"
TIME_MACHINE = RemoteFile("timemachine.txt", D2L_DATA_URL + "timemachine.txt", "090b5e7e70c295757f55df93cb0a180b9691891a")


def clean(text: str) -> str:
    """Every run of characters other than letters becomes one space; lower case (D2L 9.2)."""
    return re.sub("[^A-Za-z]+", " ", text).lower()


def clean_lines(text: str) -> list[str]:
    """The 0.16 edition's reading: each line cleaned and stripped (3,221 lines of The Time Machine)."""
    return [clean(line).strip() for line in text.splitlines()]


def tokenize(text: str, token: str) -> list[str]:
    """`char`: every character; `word`: the words between spaces; `bpe`: the symbols before any
    merge, each word's characters and `_` (the learned subwords need `encode`)."""
    if token == "char":
        return list(text)
    if token == "word":
        return text.split()
    if token == "bpe":
        return [c for word in text.split() for c in word + bpe.END]
    raise ValueError(f"unknown token kind '{token}'; expected char, word or bpe")


def encode(text: str, token: str, vocab: Sequence[str]) -> list[str]:
    """A cleaned text's tokens as a model of `vocab` reads them: `bpe` segments each word by
    longest match over the vocabulary's subwords (D2L 14.6); `char` and `word` as `tokenize`."""
    if token == "bpe":
        return bpe.encode(text.split(), vocab)
    return tokenize(text, token)


def decode(tokens: Sequence[str], token: str) -> str:
    """Tokens back to text: characters joined, words joined by spaces, subwords joined with
    each `_` a space."""
    if token == "char":
        return "".join(tokens)
    if token == "bpe":
        return bpe.decode(tokens).rstrip()
    return " ".join(tokens)


def subword_corpus(text: str, merges: int) -> tuple[list[str], list[str]]:
    """A cleaned text as byte-pair-encoded subwords (D2L 14.6): `merges` merges learned from its
    word frequencies, then every word segmented by longest match over the learned symbols.
    Returns (tokens, symbols): the symbols most frequent in the tokens first (ties in learned
    order), `[UNK]` left out (the vocabulary's `<unk>` stands for it)."""
    words = text.split()
    symbols = bpe.learn(bpe.word_freqs(words), merges).symbols
    tokens = bpe.encode(words, symbols)
    counts = collections.Counter(tokens)
    distinct = dict.fromkeys(s for s in symbols if s != bpe.UNKNOWN)  # two merges may spell the same symbol
    ordered = sorted(distinct, key=lambda s: -counts[s])  # stable
    return tokens, ordered


class Vocab:
    """Tokens to indices and back (D2L 9.2.2). Index 0 is `<unk>`, which every token seen fewer
    than `min_freq` times (and every unseen one) maps to; the `reserved` tokens follow, then
    the others by descending frequency, ties in order of first appearance."""

    def __init__(self, tokens: Iterable[str], min_freq: int = 0, reserved: Sequence[str] = ()):
        self.counts = collections.Counter(tokens)
        self.token_freqs = sorted(self.counts.items(), key=lambda kv: kv[1], reverse=True)  # stable: first seen first
        self.idx_to_token = ["<unk>", *reserved]
        self.idx_to_token += [t for t, f in self.token_freqs if f >= min_freq and t not in self.idx_to_token]
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}

    unk = 0

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, token: str) -> int:
        return self.token_to_idx.get(token, self.unk)

    def indices(self, tokens: Iterable[str]) -> list[int]:
        return [self[t] for t in tokens]

    def tokens(self, indices: Iterable[int]) -> list[str]:
        return [self.idx_to_token[int(i)] for i in indices]


def ngram_freqs(tokens: Sequence[str], n: int) -> list[tuple[tuple[str, ...], int]]:
    """The n-grams of a token sequence with their counts, most frequent first (D2L 9.3.2)."""
    grams = zip(*(tokens[i:] for i in range(n)))
    return sorted(collections.Counter(grams).items(), key=lambda kv: kv[1], reverse=True)


def windows(corpus: np.ndarray, num_steps: int, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` windows of `num_steps` tokens starting at token `first`, `first + 1`, ...; the
    targets are the same windows one token later. Returns (count, num_steps) int32 arrays."""
    starts = first + np.arange(count)[:, None] + np.arange(num_steps)[None, :]
    return corpus[starts].astype(np.int32), corpus[starts + 1].astype(np.int32)


def read_time_machine(cfg) -> str:
    path = Path(cfg.file) if getattr(cfg, "file", None) else find_or_fetch(TIME_MACHINE, cfg.dir)
    return path.read_text(encoding="utf-8")


def language_model_data(text: str, cfg) -> Dataset:
    """Windows of a cleaned text as a language-model data set, as `cfg` (a `TimeMachineData`) asks.

    With `sampling: windows` the first `num_train` windows train and the `num_val` after them
    validate (1.0). With `sequential` or `random` the first `max_tokens` tokens train (0.16:
    10,000) and the next `num_val` non-overlapping windows of the text validate.
    """
    if cfg.token == "bpe":  # the vocabulary is every learned symbol, seen in the corpus or not
        corpus_tokens, symbols = subword_corpus(clean(text), cfg.merges)
        vocab = Vocab(corpus_tokens, reserved=symbols)
    else:
        corpus_tokens = tokenize(clean(text), cfg.token)
        vocab = Vocab(corpus_tokens)
    corpus = np.asarray(vocab.indices(corpus_tokens), np.int32)
    t = cfg.num_steps
    if cfg.sampling == "windows":
        need = cfg.num_train + cfg.num_val + t
        if need > len(corpus):
            raise ConfigError(f"data: num_train + num_val + num_steps = {need} tokens, but the corpus has {len(corpus)}")
        x_train, y_train = windows(corpus, t, 0, cfg.num_train)
        x_val, y_val = windows(corpus, t, cfg.num_train, cfg.num_val)
    else:
        n_tokens = min(cfg.max_tokens or len(corpus), len(corpus))
        if n_tokens <= 2 * t + 1:
            raise ConfigError(f"data.max_tokens: {n_tokens} tokens are too few for windows of num_steps = {t}")
        x_train, y_train = windows(corpus, t, 0, n_tokens - t)  # every window whose target fits
        rest = corpus[n_tokens:]
        count = min(cfg.num_val, max((len(rest) - 1) // t, 0))
        starts = np.arange(count)[:, None] * t + np.arange(t)[None, :]
        x_val, y_val = rest[starts].astype(np.int32), rest[starts + 1].astype(np.int32)
    meta = {"vocab": vocab.idx_to_token, "token": cfg.token, "corpus_tokens": len(corpus)}
    return Dataset(x_train, y_train, x_val, y_val, num_classes=len(vocab), meta=meta,
                   sampling=Sampling(cfg.sampling, t, cfg.drop_last))


def time_machine(cfg, seed: int) -> Dataset:
    """The Time Machine by H. G. Wells (D2L 9.2), found or downloaded with its sha1."""
    return language_model_data(read_time_machine(cfg), cfg)
