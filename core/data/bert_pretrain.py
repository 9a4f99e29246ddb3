"""BERT's pretraining examples as a data set of the training loop (D2L 14.10).

The examples are the book's (`core.data.bert_data`): next-sentence pairs of each paragraph and
their masked tokens, drawn once from the run's seed. The corpus is WikiText-2 when given its
`wiki.train.tokens`; offline, PTB's training sentences (runs of consecutive sentences of the
Wall Street Journal as paragraphs) or The Time Machine's paragraphs stand in for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, DataNotFoundError
from .bert_data import WIKITEXT2, Draws, bert_examples, read_wiki, time_machine_paragraphs
from .bert_nli import BERT_NLI_SOURCES
from .dataset import Dataset
from .files import find_or_fetch
from .ptb import PTB, read_ptb
from .sampling import Sampling
from .text import TIME_MACHINE

INPUTS = ("tokens", "segments", "valid_lens", "pred_positions")
TARGETS = ("mlm_labels", "mlm_weights", "nsp_labels")
CORPORA = {"wikitext2": WIKITEXT2, "ptb": PTB, "timemachine": TIME_MACHINE}


def ptb_paragraphs(sentences: list[list[str]], per_paragraph: int) -> list[list[str]]:
    """Each run of `per_paragraph` consecutive non-empty sentences as a paragraph of sentence
    strings (PTB keeps the articles' order, so a run is mostly one article's); a last run of
    fewer than two sentences is left out, as the book leaves out one-sentence paragraphs."""
    lines = [" ".join(s) for s in sentences if s]
    runs = [lines[i : i + per_paragraph] for i in range(0, len(lines), per_paragraph)]
    return [run for run in runs if len(run) >= 2]


def corpus_paragraphs(cfg) -> tuple[list[list[str]], Path]:
    """The configured corpus as paragraphs of sentence strings, and the file read.

    Raises:
        DataNotFoundError: no such file; DataError: a file that is not the corpus it should be.
    """
    path = Path(cfg.file).expanduser() if cfg.file else find_or_fetch(CORPORA[cfg.corpus], cfg.dir)
    if not path.is_file():
        raise DataNotFoundError(f"data.file: {path} not found (expected the {cfg.corpus} corpus)")
    try:
        if cfg.corpus == "wikitext2":
            paragraphs = read_wiki(path)
        elif cfg.corpus == "ptb":
            paragraphs = ptb_paragraphs(read_ptb(path), cfg.sentences_per_paragraph)
        else:
            paragraphs = time_machine_paragraphs(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"data.file: {err}") from None
    return paragraphs[: cfg.num_paragraphs], path


def bert_pretrain(cfg, seed: int) -> Dataset:
    """The pretraining examples of `cfg.corpus`, drawn with `seed`; meta["vocab"] lists the
    tokens by id (the run writes it to vocab.json, for a run fine-tuned from this one)."""
    paragraphs, path = corpus_paragraphs(cfg)
    arrays, vocab = bert_examples(paragraphs, cfg.max_len, Draws(np.random.default_rng(seed)), cfg.min_freq)
    n = len(arrays["tokens"])
    if n < cfg.batch_size:
        raise DataError(f"{path}: {n} pretraining examples at data.max_len {cfg.max_len}, fewer than "
                        f"data.batch_size ({cfg.batch_size})")
    x, y = {k: arrays[k] for k in INPUTS}, {k: arrays[k] for k in TARGETS}
    empty = lambda d: {k: np.zeros((0, *v.shape[1:]), v.dtype) for k, v in d.items()}  # noqa: E731
    sampling = Sampling("stream", stream_steps=cfg.steps_per_epoch) if cfg.steps_per_epoch else Sampling()
    meta = {"source": str(path), "corpus": cfg.corpus, "paragraphs": len(paragraphs), "examples": n,
            "vocab": list(vocab.idx_to_token), "predictions": int(arrays["mlm_weights"].sum()),
            "share/is_next": float(arrays["nsp_labels"].mean())}
    return Dataset(x, y, empty(x), empty(y), len(vocab), meta=meta, sampling=sampling)


# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
BERT_SOURCES: dict = {"bert_pretrain": (bert_pretrain, True), **BERT_NLI_SOURCES}
