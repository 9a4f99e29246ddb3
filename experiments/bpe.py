"""Byte pair encoding (D2L 14.6): the book's merges and segmentations, exact.

The book's four words with their frequencies, its 28 initial symbols (a-z, `_`, `[UNK]`), ten
merges of the most frequent pair (`core.data.bpe`; of tied pairs the first counted wins, as the
book's `max` over an insertion-ordered dict picks it: the first merge, ('t', 'a'), ties with
('a', 'l') and ('l', 'l') at 9), the words' final segmentations, the symbols, and the
segmentation of two new words by longest match. Every printed value is compared with the book's
print; `max_difference` counts the values that differ (0: all match). Nothing is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.data import bpe
from dlrun.core.report import progress

RAW_TOKEN_FREQS = {"fast_": 4, "faster_": 3, "tall_": 5, "taller_": 4}
NUM_MERGES = 10
NEW_WORDS = ["tallest_", "fatter_"]
# what D2L 14.6.2 prints
BOOK = {
    "merges": [["t", "a"], ["ta", "l"], ["tal", "l"], ["f", "a"], ["fa", "s"], ["fas", "t"], ["e", "r"], ["er", "_"],
               ["tall", "_"], ["fast", "_"]],
    "token_freqs": ["fast_", "fast er_", "tall_", "tall er_"],
    "symbols": [*bpe.BOOK_SYMBOLS, "ta", "tal", "tall", "fa", "fas", "fast", "er", "er_", "tall_", "fast_"],
    "segment_BPE": ["tall e s t _", "fa t t er_"],
}


class BPEOptions(Section):
    name: str = "bpe"


def book_steps() -> dict[str, list]:
    """The book's code path, step by step: the merges printed, the final `token_freqs` keys, the
    symbols and the segmentation of `NEW_WORDS`."""
    symbols = list(bpe.BOOK_SYMBOLS)
    token_freqs = bpe.spaced(RAW_TOKEN_FREQS)
    merges = []
    for _ in range(NUM_MERGES):
        pair = bpe.get_max_freq_pair(token_freqs)
        token_freqs = bpe.merge_symbols(pair, token_freqs, symbols)
        merges.append(list(pair))
    return {"merges": merges, "token_freqs": list(token_freqs), "symbols": symbols,
            "segment_BPE": bpe.segment_BPE(NEW_WORDS, symbols)}


def mismatches(ours: list, book: list) -> int:
    """How many positions differ, each missing or extra value counting one."""
    return sum(a != b for a, b in zip(ours, book)) + abs(len(ours) - len(book))


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Run the book's steps; write bpe.txt (what the book prints) and summary.json (our values,
    the book's, the mismatches per value and their total, `max_difference`)."""
    validate_options(BPEOptions, cfg, source)
    ours = book_steps()
    lines = [f"merge #{i + 1}: {tuple(pair)}" for i, pair in enumerate(ours["merges"])]
    lines += [str(ours["symbols"]), str(ours["token_freqs"]), str(ours["segment_BPE"])]
    disk.write_atomic(run_dir / "bpe.txt", "\n".join(lines) + "\n")
    notes = progress.notes(cfg.trainer.progress)
    for line in lines:
        notes.note(line)
    differ = {key: mismatches(ours[key], BOOK[key]) for key in BOOK}
    summary = {**ours, "raw_token_freqs": RAW_TOKEN_FREQS, "book": BOOK, "mismatches": differ,
               "max_difference": sum(differ.values()),
               "ties": "of pairs tied at the largest count, the first counted (insertion order) merges"}
    disk.write_json(run_dir / "summary.json", summary)
    return summary


# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {"bpe": (run, BPEOptions, ("max_difference",))}
