"""Using word vectors (D2L 14.4.3, 14.7): nearest neighbours by cosine, analogies, and reading
pretrained GloVe or fastText vectors from their text files.

Everything here works on host arrays: a table W (words, dims) whose row i is the vector of
`tokens[i]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

COSINE_EPS = 1e-9  # the book's guard against a zero vector


def cosine(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """cos(W_i, x) for every row, (words,): the book's W x / sqrt(|W_i|^2 |x|^2 + 1e-9)."""
    W, x = np.asarray(W, np.float64), np.asarray(x, np.float64)
    return W @ x / np.sqrt(np.sum(W * W, axis=1) * np.sum(x * x) + COSINE_EPS)


def top_k(scores: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[tuple[int, float]]:
    """The `k` highest scores as (index, score), highest first, skipping `exclude`; ties go to
    the lower index."""
    scores = np.asarray(scores, np.float64).copy()
    scores[list(exclude)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), float(scores[i])) for i in order if np.isfinite(scores[i])]


def nearest(W: np.ndarray, index: int, k: int) -> list[tuple[int, float]]:
    """The `k` rows most similar to row `index` by cosine, itself left out (the book's
    `get_similar_tokens` / `knn`)."""
    return top_k(cosine(W, W[index]), k, exclude=(index,))


def analogy(W: np.ndarray, a: int, b: int, c: int, k: int = 1) -> list[tuple[int, float]]:
    """a : b :: c : ?, the rows nearest by cosine to W_b - W_a + W_c, the three left out
    (D2L 14.7.2.2; the book keeps them but they rarely win with a trained table)."""
    return top_k(cosine(W, W[b] - W[a] + W[c]), k, exclude=(a, b, c))


class WordVectors:
    """A table of word vectors with its tokens; unknown words raise a KeyError naming them."""

    def __init__(self, tokens: Sequence[str], W: np.ndarray):
        if len(tokens) != len(W):
            raise ValueError(f"{len(tokens)} tokens for {len(W)} vectors")
        self.tokens = list(tokens)
        self.W = np.asarray(W, np.float32)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def id(self, word: str) -> int:
        if word not in self.index:
            raise KeyError(f"'{word}' is not in the vocabulary ({len(self.tokens)} words)")
        return self.index[word]

    def similar(self, word: str, k: int = 3) -> list[tuple[str, float]]:
        return [(self.tokens[i], s) for i, s in nearest(self.W, self.id(word), k)]

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        return [(self.tokens[i], s) for i, s in analogy(self.W, self.id(a), self.id(b), self.id(c), k)]


def read_text_vectors(path: Path, max_words: int | None = None) -> WordVectors:
    """Vectors from a GloVe or fastText text file, `word v1 v2 ... vd` per line (D2L 14.7.1,
    `TokenEmbedding`). fastText's header line `count dims` is skipped; every other line must
    have the first line's number of values. Like the book, index 0 is `<unk>`, a zero vector.

    Raises:
        ValueError: a line with another number of values, or a value that is not a number,
        naming the file and the line.
    """
    path = Path(path)
    tokens, rows, dims = ["<unk>"], [], None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # fastText's header
            if len(parts) < 2:
                continue
            dims = dims if dims is not None else len(parts) - 1
            if len(parts) - 1 != dims:
                raise ValueError(f"{path}:{lineno}: expected a word and {dims} numbers, found {len(parts) - 1} values")
            try:
                rows.append(np.asarray(parts[1:], np.float32))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: the vector of '{parts[0]}' holds a value that is not a number") from None
            tokens.append(parts[0])
            if max_words is not None and len(rows) >= max_words:
                break
    if dims is None:
        raise ValueError(f"{path}: no word vectors (expected lines 'word v1 v2 ...')")
    return WordVectors(tokens, np.vstack([np.zeros((1, dims), np.float32), *rows]))
