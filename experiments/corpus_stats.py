"""Corpus statistics of The Time Machine (D2L 9.2-9.3, 0.16 edition 8.2-8.3): corpus and
vocabulary sizes, the most frequent words, bigrams and trigrams, and Zipf's law: n-gram
frequency against rank on log-log axes, roughly a straight line for each n.

Nothing is trained; the text is read as the data section says (found or downloaded with its
sha1) and cleaned the book's way (1.0: the whole text; 0.16: line by line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.data.text import Vocab, clean, clean_lines, ngram_freqs, read_time_machine, tokenize
from dlrun.core.report import plots, progress

BOOK = {
    "lines (0.16)": 3221, "char corpus (0.16)": 170580, "char corpus (1.0)": 173428, "char vocab": 28,
    "top words": [["the", 2261], ["i", 1267], ["and", 1245], ["of", 1155], ["a", 816]],
    "top bigrams": [["of the", 309], ["in the", 169], ["i had", 130]],
    "top trigrams": [["the time traveller", 59], ["the time machine", 30], ["the medical man", 24]],
}


class CorpusStatsOptions(Section):
    name: str = "corpus_stats"
    top: int = Field(10, gt=0, description="how many of the most frequent n-grams to report")


def corpus_stats(text: str, top: int) -> dict[str, Any]:
    """Sizes and the most frequent n-grams of a text, cleaned as the book cleans it."""
    words = tokenize(clean(text), "word")
    lines = clean_lines(text)
    chars_016 = [c for line in lines for c in line]
    stats: dict[str, Any] = {
        "lines (0.16)": len(lines),
        "char corpus (0.16)": len(chars_016),
        "char corpus (1.0)": len(clean(text)),
        "char vocab": len(Vocab(clean(text))),
        "word corpus": len(words),
        "word vocab": len(Vocab(words)),
    }
    for n, name in ((1, "words"), (2, "bigrams"), (3, "trigrams")):
        stats[f"top {name}"] = [[" ".join(g), c] for g, c in ngram_freqs(words, n)[:top]]
    return stats


def zipf_slopes(words: list[str]) -> dict[str, float]:
    """The least-squares slope of log frequency against log rank, for ranks 10-1000 of each n
    (Zipf's law: about -1 for words; the book notes n-grams decay more slowly)."""
    out = {}
    for n in (1, 2, 3):
        freqs = np.array([c for _, c in ngram_freqs(words, n)], np.float64)
        ranks = np.arange(1, len(freqs) + 1)
        sel = (ranks >= 10) & (ranks <= 1000)
        out[f"{n}-gram"] = float(np.polyfit(np.log(ranks[sel]), np.log(freqs[sel]), 1)[0])
    return out


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write summary.json (ours next to the book's) and zipf.png."""
    opts = validate_options(CorpusStatsOptions, cfg, source)
    text = read_time_machine(cfg.data)
    stats = corpus_stats(text, opts.top)
    words = tokenize(clean(text), "word")
    summary = {"ours": stats, "book": BOOK, "zipf_slope": zipf_slopes(words)}
    notes = progress.notes(cfg.trainer.progress)
    for key in ("char corpus (1.0)", "char vocab", "word vocab"):
        notes.note(f"{key}: {stats[key]}")
    for name in ("words", "bigrams", "trigrams"):
        notes.note(f"top {name}: " + ", ".join(f"{g} ({c})" for g, c in stats[f"top {name}"][:5]))
    disk.write_json(run_dir / "summary.json", summary)
    _plot(run_dir / "zipf.png", words)
    return summary


def _plot(path: Path, words: list[str]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    for n, name in ((1, "unigram"), (2, "bigram"), (3, "trigram")):
        freqs = [c for _, c in ngram_freqs(words, n)]
        ax.plot(np.arange(1, len(freqs) + 1), freqs, label=name)
    ax.set(xscale="log", yscale="log", xlabel="token: x (rank)", ylabel="frequency: n(x)",
           title="Zipf's law in The Time Machine (D2L 9.3.2)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    plots.write_figure(path, fig)
