"""Word similarity and analogy (D2L 14.7) with the vectors word2vec learns on PTB (D2L 14.4),
or with pretrained GloVe/fastText vectors read from their text file.

The vectors: a trained word2vec run (`run: PATH`), a vectors file (`vectors: PATH`), or else a
skip-gram trained here through the one training loop with the config's own data, model, loss,
optimizer and trainer sections.

The evaluation set is generated from the vocabulary, so every question's answer is checkable by
spelling: pairs (w, w + "s") of the `num_pairs` most frequent words whose "s" form is also a
word (plurals such as share/shares, and third-person verbs such as make/makes: one spelling
relation), each question a : a+s :: b : ? taken from consecutive pairs; plus the hand-written
`IRREGULAR` pairs of past tenses and comparatives that the vocabulary has. A question is right
when the top word (the three question words left out) is the answer. The book's examples
(neighbours of chip, baby, beautiful; man:woman::son:?, beijing:china::tokyo:?, bad:worst::big:?,
do:did::go:?) are reported as far as the vocabulary has their words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, ConfigError, Section, derive, validate_options
from dlrun.core.nn.embeddings import WordVectors, read_text_vectors
from dlrun.core.nn.word2vec import word_vectors
from dlrun.core.report import progress

BOOK_SIMILAR = ("chip", "baby", "beautiful")  # D2L 14.7.2.1 (chip: 14.4.3)
# D2L 14.7.2.2 with the answers GloVe gives in the book
BOOK_ANALOGIES = (("man", "woman", "son", "daughter"), ("beijing", "china", "tokyo", "japan"),
                  ("bad", "worst", "big", "biggest"), ("do", "did", "go", "went"))
# hand-written pairs of one relation each (past tense; comparative), kept where the vocabulary has both words
IRREGULAR = {
    "past tense": (("do", "did"), ("go", "went"), ("say", "said"), ("make", "made"), ("take", "took"),
                   ("come", "came"), ("get", "got"), ("give", "gave"), ("find", "found"), ("buy", "bought"),
                   ("sell", "sold"), ("pay", "paid"), ("see", "saw"), ("know", "knew"), ("think", "thought")),
    "comparative": (("big", "bigger"), ("small", "smaller"), ("high", "higher"), ("low", "lower"),
                    ("strong", "stronger"), ("weak", "weaker"), ("large", "larger"), ("long", "longer"),
                    ("fast", "faster"), ("cheap", "cheaper")),
}


TOP_HITS = 10  # a second, kinder score: the answer among this many nearest words


class WordAnalogyOptions(Section):
    name: str = "word_analogy"
    run: str | None = Field(None, description="a trained word2vec run directory whose centre vectors to use")
    vectors: str | None = Field(None, description="a GloVe/fastText text file ('word v1 v2 ...' per line) instead")
    max_words: int | None = Field(None, gt=0, description="with vectors: read the first N words only")
    num_pairs: int = Field(50, gt=1, description="the most frequent (w, w + 's') pairs to ask about")
    top_k: int = Field(3, gt=0, description="neighbours reported per word")


def plural_pairs(tokens: list[str], num_pairs: int) -> list[tuple[str, str]]:
    """(w, w + "s") for the first `num_pairs` words w (in vocabulary order: most frequent first)
    whose "s" form is also a word; w of 3 letters or more, not ending in "s"."""
    known = set(tokens)
    pairs = [(w, w + "s") for w in tokens if w.isalpha() and len(w) >= 3 and not w.endswith("s") and w + "s" in known]
    return pairs[:num_pairs]


def questions(tokens: list[str], num_pairs: int) -> list[tuple[str, str, str, str, str]]:
    """(a, b, c, d, relation): a : b :: c : d, from consecutive pairs of each relation."""
    known = set(tokens)
    relations = {"plural -s": plural_pairs(tokens, num_pairs)}
    relations |= {name: [p for p in pairs if p[0] in known and p[1] in known] for name, pairs in IRREGULAR.items()}
    out = []
    for name, pairs in relations.items():
        out += [(*pairs[i], *pairs[(i + 1) % len(pairs)], name) for i in range(len(pairs))] if len(pairs) > 1 else []
    return out


def score(vectors: WordVectors, qs: list[tuple[str, str, str, str, str]]) -> dict[str, Any]:
    """Top-1 accuracy (and how often the answer is among the top `TOP_HITS`) over the questions whose four words the vectors have, overall and by relation."""
    asked = [q for q in qs if all(w in vectors for w in q[:4])]
    found = {q: [t for t, _ in vectors.analogy(*q[:3], k=TOP_HITS)] for q in asked}
    right = [q for q in asked if found[q][0] == q[3]]
    near = [q for q in asked if q[3] in found[q]]
    by = {}
    for rel in sorted({q[4] for q in asked}):
        n = sum(q[4] == rel for q in asked)
        by[rel] = {"questions": n, "accuracy": sum(q[4] == rel for q in right) / n}
    return {"accuracy": len(right) / len(asked) if asked else 0.0,
            f"top{TOP_HITS}_accuracy": len(near) / len(asked) if asked else 0.0, "questions": len(asked),
            "skipped": len(qs) - len(asked), "by_relation": by,
            "right": [" ".join(q[:4]) for q in right][:20]}


def book_examples(vectors: WordVectors, k: int) -> dict[str, Any]:
    similar = {w: [[t, round(s, 4)] for t, s in vectors.similar(w, k)] for w in BOOK_SIMILAR if w in vectors}
    analogies = {}
    for a, b, c, book in BOOK_ANALOGIES:
        if all(w in vectors for w in (a, b, c)):
            got = vectors.analogy(a, b, c, k)
            analogies[f"{a}:{b}::{c}:?"] = {"ours": [[t, round(s, 4)] for t, s in got], "book": book,
                                            "agrees": got[0][0] == book}
    missing = [w for w in BOOK_SIMILAR if w not in vectors]
    missing += [" ".join(q[:3]) for q in BOOK_ANALOGIES if not all(w in vectors for w in q[:3])]
    return {"similar": similar, "analogies": analogies, "not_in_vocabulary": missing}


def load_vectors(cfg: Config, opts: WordAnalogyOptions, run_dir: Path, source: str) -> tuple[WordVectors, str]:
    """The vectors the options name, or a skip-gram trained here; and where they came from."""
    if opts.run and opts.vectors:
        raise ConfigError(f"{source}: experiment: give run or vectors, not both")
    if opts.vectors:
        path = Path(opts.vectors).expanduser()
        if not path.is_file():
            raise ConfigError(f"{source}: experiment.vectors: no such file {path}")
        try:
            return read_text_vectors(path, opts.max_words), str(path)
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"{source}: experiment.vectors: {err}") from None
    if opts.run:
        from dlrun.core.training.inference import load_run

        run = load_run(Path(opts.run).expanduser())
        if run.cfg.model.name != "skip_gram":
            raise ConfigError(f"{source}: experiment.run: {opts.run} trained {run.cfg.model.name}, not skip_gram")
        return word_vectors(run.state.params, run.data.meta["vocab"]), str(opts.run)
    if cfg.model.name != "skip_gram" or cfg.data.name != "ptb_word2vec":
        raise ConfigError(f"{source}: without experiment.run or experiment.vectors, word_analogy trains a skip_gram "
                          f"on ptb_word2vec; found model.name {cfg.model.name}, data.name {cfg.data.name}")
    from dlrun.core.data import load_dataset
    from dlrun.core.training.train import train

    sub = derive(cfg, {"name": "word2vec", "trainer.progress": "none"}, source)
    data = load_dataset(sub.data, sub.seed)
    result = train(sub, run_dir / "word2vec", data=data, plot=False)
    return word_vectors(result.state.params, data.meta["vocab"]), str(run_dir / "word2vec")


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write summary.json: the evaluation set's accuracy and the book's examples."""
    opts = validate_options(WordAnalogyOptions, cfg, source)
    run_dir = Path(run_dir)
    vectors, origin = load_vectors(cfg, opts, run_dir, source)
    tokens = [t for t in vectors.tokens if t != "<unk>"]
    result = score(vectors, questions(tokens, opts.num_pairs))
    summary = {"accuracy": result["accuracy"], f"top{TOP_HITS}_accuracy": result[f"top{TOP_HITS}_accuracy"],
               "questions": result["questions"], "vectors": origin,
               "evaluation": result, "book": book_examples(vectors, opts.top_k)}
    notes = progress.notes(cfg.trainer.progress)
    notes.note(f"analogy accuracy {result['accuracy']:.3f} (top {TOP_HITS}: {result[f'top{TOP_HITS}_accuracy']:.3f}) "
               f"over {result['questions']} questions ({origin})")
    for w, near in summary["book"]["similar"].items():
        notes.note(f"{w}: " + ", ".join(f"{t} ({s:.3f})" for t, s in near))
    for q, a in summary["book"]["analogies"].items():
        notes.note(f"{q} {a['ours'][0][0]} (book: {a['book']})")
    disk.write_json(run_dir / "summary.json", summary)
    return summary


EXPERIMENTS: dict = {"word_analogy": (run, WordAnalogyOptions, ("accuracy", f"top{TOP_HITS}_accuracy"))}
