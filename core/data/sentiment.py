"""Sentiment analysis data (D2L 15.1): the IMDb reviews as the book reads them, and an offline
stand-in of the same form.

`imdb` with `source: real` reads Stanford's aclImdb_v1.tar.gz, or the folder it extracts to,
as `read_imdb` and `load_data_imdb` do: each review's newlines removed, words split on spaces,
a vocabulary of the training tokens seen at least `min_freq` times with `<pad>` reserved, and
every review truncated or padded to `num_steps` tokens. The training reviews train, the test
reviews validate.

`source: stand_in` is a binary document classification task built from files the data
directory already has, for runs without the 84 MB download: documents of up to `doc_words`
consecutive words (drawn lengths, doc_words / 4 and up) of The Time Machine (label 1) and as
many of the Penn Treebank's training text (label 0, at random positions drawn with the seed),
both cleaned to lower-case letters (`core.data.text.clean`) with PTB's `<unk>` and `N`
placeholders dropped first, so that no token only one side can have gives the answer away. Half of the documents, drawn with the
seed, train; the rest validate. Its vocabulary, padding and labels are built as the real one's.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError, DataNotFoundError
from .dataset import Dataset
from .files import RemoteFile, find_or_fetch, search_dirs
from .ptb import PTB, read_ptb
from .text import TIME_MACHINE, Vocab, clean

IMDB = RemoteFile("aclImdb_v1.tar.gz", "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                  "01ada507287d82875905620988597833ad4e0903")
IMDB_DIR = "aclImdb"  # what the archive extracts to
PAD = "<pad>"
LABELS = ("pos", "neg")  # the book's reading order; pos is 1, neg 0
IMDB_LABEL_NAMES = ("negative", "positive")
STAND_IN_LABEL_NAMES = ("penn_treebank", "time_machine")
PTB_PLACEHOLDERS = frozenset({"<unk>", "N"})  # PTB's rare-word and number tokens: only PTB has them
_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/[^/]+\.txt$")


def review_text(raw: bytes) -> str:
    """A review as the book reads it: UTF-8, newlines removed (`read_imdb`)."""
    return raw.decode("utf-8").replace("\n", "")


def review_tokens(text: str) -> list[str]:
    """The book's word tokens of a review: split on spaces (`d2l.tokenize(..., 'word')`)."""
    return text.split()


def read_imdb(path: Path) -> dict[str, dict[str, list[str]]]:
    """{split: {label: [review, ...]}} of the archive or extracted folder at `path`, each label's
    reviews in file-name order (the book lists folders in the file system's order).

    Raises:
        DataError: a split or label with no review, naming the path.
    """
    path = Path(path)
    out: dict[str, dict[str, list[tuple[str, str]]]] = {s: {lab: [] for lab in LABELS} for s in ("train", "test")}
    if path.is_dir():
        root = path / IMDB_DIR if (path / IMDB_DIR).is_dir() else path
        for split in out:
            for label in LABELS:
                files = sorted((root / split / label).glob("*.txt"))
                out[split][label] = [(f.name, review_text(f.read_bytes())) for f in files]
    else:
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    m = _MEMBER.search(member.name)
                    if m and member.isfile():
                        out[m[1]][m[2]].append((Path(member.name).name, review_text(tar.extractfile(member).read())))
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"{path}: not a readable aclImdb_v1.tar.gz ({err})") from None
    empty = [f"{s}/{lab}" for s in out for lab in LABELS if not out[s][lab]]
    if empty:
        raise DataError(f"{path}: no reviews in {', '.join(empty)} (expected aclImdb/{{train,test}}/{{pos,neg}}/*.txt)")
    return {s: {lab: [text for _, text in sorted(rows)] for lab, rows in by.items()} for s, by in out.items()}


def truncate_pad(ids: Sequence[int], num_steps: int, pad: int) -> list[int]:
    """The first `num_steps` ids, padded with `pad` to that length (the book's `truncate_pad`)."""
    return list(ids[:num_steps]) + [pad] * max(num_steps - len(ids), 0)


def features(token_lists: Iterable[Sequence[str]], vocab: Vocab, num_steps: int) -> np.ndarray:
    """Token lists as (n, num_steps) int32 ids, truncated and padded with `<pad>`."""
    rows = [truncate_pad(vocab.indices(tokens), num_steps, vocab[PAD]) for tokens in token_lists]
    return np.asarray(rows, np.int32).reshape(len(rows), num_steps)


def text_dataset(train: tuple[list[list[str]], np.ndarray], test: tuple[list[list[str]], np.ndarray], cfg,
                 label_names: tuple[str, ...], meta: dict) -> Dataset:
    """Tokenized documents with their labels as a Dataset: the vocabulary of the training tokens
    seen at least `min_freq` times (`<unk>` 0, `<pad>` 1), ids truncated and padded to
    `num_steps`; meta["vocab"] lists the tokens by id."""
    vocab = Vocab((t for tokens in train[0] for t in tokens), cfg.min_freq, reserved=(PAD,))
    x_train, x_val = features(train[0], vocab, cfg.num_steps), features(test[0], vocab, cfg.num_steps)
    meta = meta | {"vocab": list(vocab.idx_to_token), "num_steps": cfg.num_steps, "num_train": len(x_train),
                   "num_val": len(x_val), "train_tokens_mean": float(np.mean([len(t) for t in train[0]]))}
    return Dataset(x_train, train[1].astype(np.int32), x_val, test[1].astype(np.int32), 2, label_names, meta)


def imdb_path(cfg) -> Path:
    """The configured file or folder, else an extracted aclImdb folder or the archive in a data
    directory, else the archive fetched with its sha1."""
    if cfg.file:
        path = Path(cfg.file).expanduser()
        if not path.exists():
            raise DataNotFoundError(f"data.file: {path} not found (expected aclImdb_v1.tar.gz or an extracted aclImdb folder)")
        return path
    for d in search_dirs(cfg.dir):
        if (d / IMDB_DIR / "train").is_dir():
            return d / IMDB_DIR
    return find_or_fetch(IMDB, cfg.dir, hint=" Or extract it there (an aclImdb folder); data.source: stand_in trains offline.")


def pick(reviews: dict[str, list[str]], num: int | None) -> tuple[list[str], np.ndarray]:
    """The reviews of one split, pos (1) then neg (0) as the book reads them; with `num`, the
    first ceil(num / 2) positive and num // 2 negative ones."""
    pos, neg = reviews["pos"], reviews["neg"]
    if num is not None:
        pos, neg = pos[: (num + 1) // 2], neg[: num // 2]
    return pos + neg, np.asarray([1] * len(pos) + [0] * len(neg), np.int32)


def imdb_real(cfg) -> Dataset:
    path = imdb_path(cfg)
    data = read_imdb(path)
    (train_text, y_train), (test_text, y_test) = (pick(data[s], cfg.num_reviews) for s in ("train", "test"))
    train = ([review_tokens(t) for t in train_text], y_train)
    test = ([review_tokens(t) for t in test_text], y_test)
    return text_dataset(train, test, cfg, IMDB_LABEL_NAMES, {"source": str(path), "preprocess": "split"})


def stand_in_words(text: str) -> list[str]:
    """Any text cleaned as the stand-in's documents are: lower-case letter words."""
    return clean(text).split()


def ptb_words(sentences: Sequence[Sequence[str]]) -> list[str]:
    """PTB's words without its placeholders, cleaned (`'s` becomes `s`, as The Time Machine's)."""
    return stand_in_words(" ".join(t for line in sentences for t in line if t not in PTB_PLACEHOLDERS))


def stand_in_documents(time_machine: str, ptb: Sequence[Sequence[str]], doc_words: int,
                       rng: np.random.Generator) -> tuple[list[list[str]], np.ndarray]:
    """The Time Machine cut into consecutive documents (label 1), then as many stretches of PTB
    at distinct random offsets (label 0), in that order. Every document's length is drawn
    uniformly from doc_words // 4 .. doc_words words, for both sources alike, so that length
    tells nothing and padding is as much part of training as it is with reviews."""
    tm, pt = stand_in_words(time_machine), ptb_words(ptb)
    lo = max(doc_words // 4, 1)
    ends = np.cumsum(rng.integers(lo, doc_words + 1, size=len(tm) // lo + 1))
    ends = ends[ends <= len(tm)]
    n = len(ends)
    if n < 2 or len(pt) < n * doc_words:
        raise DataError(f"data.doc_words: {doc_words} words per document leave {n} documents of The Time Machine "
                        f"({len(tm)} words; PTB {len(pt)}); expected at least 2")
    starts = np.concatenate([[0], ends[:-1]])
    offsets = rng.choice(len(pt) // doc_words, size=n, replace=False) * doc_words
    lengths = rng.integers(lo, doc_words + 1, size=n)
    docs = [tm[a:b] for a, b in zip(starts, ends)] + [pt[o : o + m] for o, m in zip(offsets, lengths)]
    return docs, np.asarray([1] * n + [0] * n, np.int32)


def imdb_stand_in(cfg, seed: int) -> Dataset:
    tm_path = find_or_fetch(TIME_MACHINE, cfg.dir)
    ptb_path = find_or_fetch(PTB, cfg.dir)
    try:
        ptb = read_ptb(ptb_path)
    except ValueError as err:
        raise DataError(f"data.dir: {err}") from None
    rng = np.random.default_rng(seed)
    docs, labels = stand_in_documents(tm_path.read_text(encoding="utf-8"), ptb, cfg.doc_words, rng)
    order = rng.permutation(len(docs))
    half = len(docs) // 2
    split = [order[:half], order[half:]]
    if cfg.num_reviews is not None:
        split = [idx[: cfg.num_reviews] for idx in split]
    train, test = (([docs[i] for i in idx], labels[idx]) for idx in split)
    meta = {"source": f"stand_in: {tm_path} vs {ptb_path}", "preprocess": "clean", "doc_words": cfg.doc_words}
    return text_dataset(train, test, cfg, STAND_IN_LABEL_NAMES, meta)


def imdb(cfg, seed: int) -> Dataset:
    """The IMDb reviews (D2L 15.1, `load_data_imdb`), or the offline stand-in (`source: stand_in`)."""
    return imdb_stand_in(cfg, seed) if cfg.source == "stand_in" else imdb_real(cfg)


# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
SENTIMENT_SOURCES: dict = {"imdb": (imdb, True)}  # the stand-in's split is drawn with the seed
