"""English-French sentence pairs for machine translation (D2L 10.5).

The book's preprocessing: non-breaking spaces become spaces, everything is lower-cased, and a
space goes before `, . ! ?` where none is; tokens are the words between single spaces. Each
sentence gets `<eos>` and is cut or padded with `<pad>` to `num_steps` tokens; its valid length
counts the tokens that are not padding. The decoder's input is `<bos>` followed by the target
but its last token (teacher forcing, D2L 10.7.3).

The inputs are named arrays, batched like any other example: `x = {"src": source (T), "src_len":
source valid length, "dec": decoder input (T)}`; the targets one row, `y = [target (T) | target
valid length]` (`pack_pairs`; `split_targets` takes them apart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .dataset import Dataset
from .files import RemoteFile, find_or_fetch
from .sampling import Sampling
from .text import D2L_DATA_URL, Vocab

FRA_ENG = RemoteFile("fra-eng/fra.txt", D2L_DATA_URL + "fra-eng.zip", "94646ad1522d915e7b0f9296181140edcf86a4f5",
                     member="fra-eng/fra.txt")
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
RESERVED = (PAD, BOS, EOS)  # indices 1, 2, 3 after <unk> = 0


def preprocess(text: str) -> str:
    """The book's `preprocess_nmt`: U+202F and U+00A0 to spaces, lower case, and a space before
    `, . ! ?` when the character before is not one."""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = [" " + ch if i > 0 and ch in ",.!?" and text[i - 1] != " " else ch for i, ch in enumerate(text)]
    return "".join(out)


def words(sentence: str) -> list[str]:
    """A preprocessed sentence's tokens: the non-empty pieces between spaces."""
    return [t for t in sentence.split(" ") if t]


def parse_pairs(text: str, num_pairs: int | None = None) -> list[tuple[list[str], list[str]]]:
    """The first `num_pairs` lines `english<TAB>french` (after `preprocess`) as token lists;
    lines without a tab are skipped."""
    pairs = []
    for line in preprocess(text).split("\n"):
        if num_pairs is not None and len(pairs) >= num_pairs:
            break
        parts = line.split("\t")
        if len(parts) >= 2:
            pairs.append((words(parts[0]), words(parts[1])))
    return pairs


def pad_sentence(ids: Sequence[int], num_steps: int, eos: int, pad: int) -> tuple[list[int], int]:
    """`ids + [eos]`, cut or padded to `num_steps`; and the count of tokens that are not padding."""
    ids = [*ids, eos][:num_steps]
    return ids + [pad] * (num_steps - len(ids)), len(ids)


def pack_pairs(pairs, src_vocab: Vocab, tgt_vocab: Vocab, num_steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pairs of token lists -> (x, y (n, T+1)) int32, as the module doc says: x's `src` (n, T)
    source tokens, `src_len` (n,) tokens of the source that are not padding, `dec` (n, T) the
    decoder's input (<bos>, then the target but its last token)."""
    src, src_len, dec, ys = [], [], [], []
    for s_tokens, t_tokens in pairs:
        s, s_len = pad_sentence(src_vocab.indices(s_tokens), num_steps, src_vocab[EOS], src_vocab[PAD])
        t, t_len = pad_sentence(tgt_vocab.indices(t_tokens), num_steps, tgt_vocab[EOS], tgt_vocab[PAD])
        src.append(s)
        src_len.append(s_len)
        dec.append([tgt_vocab[BOS], *t[:-1]])
        ys.append([*t, t_len])
    rows = lambda a, width: np.asarray(a, np.int32).reshape(-1, width) if a else np.zeros((0, width), np.int32)  # noqa: E731
    x = {"src": rows(src, num_steps), "src_len": np.asarray(src_len, np.int32).reshape(-1), "dec": rows(dec, num_steps)}
    return x, rows(ys, num_steps + 1)


def split_targets(y):
    """(labels (batch, T), valid lengths (batch,))."""
    return y[:, :-1], y[:, -1]


def read_pairs_file(cfg) -> str:
    path = Path(cfg.file) if cfg.file else find_or_fetch(FRA_ENG, cfg.dir)
    return path.read_text(encoding="utf-8")


def translation_data(text: str, cfg) -> Dataset:
    """The first `num_train` pairs train and the `num_val` after them validate; both
    vocabularies (`min_freq`, reserved `<pad> <bos> <eos>`) count the tokens of all pairs read,
    as the book's do."""
    pairs = parse_pairs(text, cfg.num_train + cfg.num_val)
    if len(pairs) < cfg.num_train + 1:
        raise ConfigError(f"data.num_train: {cfg.num_train} pairs asked for, but the file holds {len(pairs)}")
    src_vocab = Vocab((t for s, _ in pairs for t in s), cfg.min_freq, RESERVED)
    tgt_vocab = Vocab((t for _, s in pairs for t in s), cfg.min_freq, RESERVED)
    x_train, y_train = pack_pairs(pairs[: cfg.num_train], src_vocab, tgt_vocab, cfg.num_steps)
    x_val, y_val = pack_pairs(pairs[cfg.num_train :], src_vocab, tgt_vocab, cfg.num_steps)
    meta = {"task": "translation", "src_vocab": src_vocab.idx_to_token, "tgt_vocab": tgt_vocab.idx_to_token,
            "num_steps": cfg.num_steps, "val_pairs": [(" ".join(s), " ".join(t)) for s, t in pairs[cfg.num_train :]]}
    return Dataset(x_train, y_train, x_val, y_val, num_classes=len(tgt_vocab), meta=meta,
                   sampling=Sampling("shuffle", drop_last=cfg.drop_last), source_vocab=len(src_vocab))


def fra_eng(cfg, seed: int) -> Dataset:
    """English-French pairs from Tatoeba (D2L 10.5), found or downloaded with the archive's sha1."""
    return translation_data(read_pairs_file(cfg), cfg)
