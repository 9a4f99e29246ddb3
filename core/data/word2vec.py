"""PTB for word2vec (D2L 14.3): subsampling, context windows, negatives.

The reader and the book's preprocessing are `core.data.ptb`; this is the loader the data
registry calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, DataNotFoundError
from .dataset import Dataset
from .files import find_or_fetch
from .ptb import PTB, draw_examples, ptb_vocab, read_ptb


def ptb_word2vec(cfg, seed: int) -> Dataset:
    """Skip-gram examples of PTB's training sentences, drawn with `seed` (D2L 14.3.6,
    `load_data_ptb`); meta["vocab"] lists the tokens by id."""
    path = Path(cfg.file).expanduser() if cfg.file else find_or_fetch(PTB, cfg.dir)
    if not path.is_file():
        raise DataNotFoundError(f"data.file: {path} not found (expected ptb.zip or an extracted ptb.train.txt)")
    try:
        sentences = read_ptb(path)[: cfg.num_sentences]
    except ValueError as err:
        raise DataError(f"data.file: {err}") from None
    if not any(len(line) >= 2 for line in sentences):
        raise DataError(f"{path}: no sentence of 2 or more words, so no centre word has a context")
    vocab = ptb_vocab(sentences, cfg.min_freq)
    try:
        ex, facts = draw_examples(sentences, vocab, seed, cfg.max_window_size, cfg.num_noise_words, cfg.subsample_t)
    except ValueError as err:
        raise DataError(f"{path}: {err} (data.min_freq: {cfg.min_freq})") from None
    x = {"center": ex["center"], "contexts_negatives": ex["contexts_negatives"]}
    y = {"mask": ex["mask"], "label": ex["label"]}
    empty = lambda d: {k: np.zeros((0, *v.shape[1:]), v.dtype) for k, v in d.items()}
    meta = facts | {"source": str(path), "num_sentences": len(sentences), "vocab": list(vocab.idx_to_token)}
    return Dataset(x, y, empty(x), empty(y), len(vocab), meta=meta,  # a vocabulary's worth of words to score
                   id_counts={"center": len(vocab), "contexts_negatives": len(vocab)})


# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
WORD2VEC_SOURCES: dict = {"ptb_word2vec": (ptb_word2vec, True)}
