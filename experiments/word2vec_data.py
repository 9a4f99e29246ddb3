"""The data set for pretraining word embeddings (D2L 14.3), checked against the book's numbers.

Exact: PTB's 42,069 training sentences, the vocabulary of 6,719 words (min_freq 10), the counts
of "the" (50,770) and "join" (45) before subsampling, and the padded batch `batchify` makes of
the book's two examples. The counts after subsampling are random (each token is kept with
probability sqrt(t / f)); ours are checked against their binomial mean and standard deviation
instead: "join" (f < t) must keep all 45, "the" must lie within 4 standard deviations.
`max_difference` is the largest difference of the exact numbers from the book's, or of an
"after" count beyond those 4 standard deviations (0 when all agree).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.data.files import find_or_fetch
from dlrun.core.data.ptb import PTB, batchify, known_tokens, pad_lists, ptb_vocab, read_ptb, subsample
from dlrun.core.errors import ConfigError
from dlrun.core.report import progress

# the book's printed outputs (D2L 14.3): `# sentences: 42069`, `vocab size: 6719`,
# `# of "the": before=50770, ...`, `# of "join": before=45, ...`, and its batchify example
BOOK = {"sentences": 42069, "vocab": 6719, "before": {"the": 50770, "join": 45}}
BOOK_EXAMPLES = ((1, [2, 2], [3, 3, 3, 3]), (1, [2, 2, 2], [3, 3]))
BOOK_BATCH = {
    "center": [1, 1],
    "contexts_negatives": [[2, 2, 3, 3, 3, 3], [2, 2, 2, 3, 3, 0]],
    "mask": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]],
    "label": [[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]],
}
SUBSAMPLE_SDS = 4.0  # an "after" count this many binomial standard deviations from its mean fails


class Word2VecDataOptions(Section):
    name: str = "word2vec_data"


def subsample_check(counts: np.ndarray, kept: np.ndarray, index: int, t: float) -> dict[str, float]:
    """A word's count after subsampling against Binomial(n, min(1, sqrt(t / f))): its mean,
    standard deviation and how many of them the draw lies away."""
    n, f = int(counts[index]), counts[index] / counts.sum()
    p = min(1.0, math.sqrt(t / f))
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    after = int(kept[index])
    z = 0.0 if sd == 0 else (after - mean) / sd
    return {"before": n, "after": after, "expected": round(mean, 2), "sd": round(sd, 2), "z": round(z, 3),
            "within": bool(abs(after - mean) <= SUBSAMPLE_SDS * sd)}


def batch_difference() -> tuple[dict[str, list], float]:
    """The book's two examples through `batchify`, and the largest difference from its output."""
    centers = np.array([c for c, _, _ in BOOK_EXAMPLES])
    batch = batchify(centers, pad_lists([c for _, c, _ in BOOK_EXAMPLES]), pad_lists([n for _, _, n in BOOK_EXAMPLES]))
    ours = {k: np.asarray(v).tolist() for k, v in batch.items()}
    diff = max(float(np.max(np.abs(np.asarray(ours[k], np.float64) - np.asarray(BOOK_BATCH[k], np.float64))))
               if np.shape(ours[k]) == np.shape(BOOK_BATCH[k]) else math.inf for k in BOOK_BATCH)
    return ours, diff


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write summary.json: our numbers beside the book's and `max_difference`."""
    validate_options(Word2VecDataOptions, cfg, source)
    if cfg.data.name != "ptb_word2vec":
        raise ConfigError(f"{source}: data.name: the word2vec_data experiment reads PTB (ptb_word2vec), not {cfg.data.name}")
    path = Path(cfg.data.file).expanduser() if cfg.data.file else find_or_fetch(PTB, cfg.data.dir)
    sentences = read_ptb(path)
    vocab = ptb_vocab(sentences, cfg.data.min_freq)
    corpus, counts = known_tokens(sentences, vocab)
    rng = np.random.default_rng(cfg.seed)
    kept = subsample(corpus, counts, rng.random(len(corpus.ids)), cfg.data.subsample_t)
    kept_counts = np.bincount(kept.ids, minlength=len(vocab))
    words = {w: subsample_check(counts, kept_counts, vocab[w], cfg.data.subsample_t) for w in BOOK["before"]}
    batch, batch_diff = batch_difference()
    ours = {"sentences": len(sentences), "vocab": len(vocab), "before": {w: c["before"] for w, c in words.items()}}
    diffs = [abs(ours["sentences"] - BOOK["sentences"]), abs(ours["vocab"] - BOOK["vocab"]), batch_diff,
             *(abs(ours["before"][w] - BOOK["before"][w]) for w in BOOK["before"]),
             *(max(0.0, abs(c["after"] - c["expected"]) - SUBSAMPLE_SDS * c["sd"]) for c in words.values())]
    summary = {"max_difference": float(max(diffs)), "ours": ours, "book": BOOK, "subsampling": words,
               "subsampling_within": all(c["within"] for c in words.values()),
               "batch": batch, "book_batch": BOOK_BATCH, "source": str(path)}
    notes = progress.notes(cfg.trainer.progress)
    notes.note(f"sentences {ours['sentences']}, vocab {ours['vocab']}; max_difference {summary['max_difference']:g}")
    for w, c in words.items():
        notes.note(f'"{w}": before={c["before"]}, after={c["after"]} (expected {c["expected"]} +- {c["sd"]})')
    disk.write_json(run_dir / "summary.json", summary)
    return summary


EXPERIMENTS: dict = {"word2vec_data": (run, Word2VecDataOptions, ("max_difference",))}
