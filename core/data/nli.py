"""Natural language inference as data (D2L 15.4): premise-hypothesis pairs as token ids.

`snli` reads the Stanford NLI corpus (`core.data.snli`) or builds the offline stand-in from
fra-eng's English sentences (`core.data.nli_pairs`, `data.source: stand_in`). Both become the
book's `SNLIDataset`: a vocabulary of the training premises' and hypotheses' tokens seen at
least `min_freq` times with `<pad>` reserved (index 0 `<unk>`, 1 `<pad>`), each sentence cut or
padded to `num_steps` ids (`d2l.truncate_pad`). x = {"premise", "hypothesis"} (n, num_steps)
int32, y (n,) int32: entailment 0, contradiction 1, neutral 2. meta["vocab"] lists the tokens
by id; meta["tokenizer"] says how `encode_pairs` splits a new text.

`bert_pair_inputs` is the book's `SNLIBERTDataset` preprocessing for fine-tuning BERT (D2L 15.7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, DataNotFoundError
from ..nn.bert import get_tokens_and_segments
from .dataset import Dataset
from .files import find_or_fetch
from .nli_pairs import stand_in_pairs
from .sampling import Sampling
from .snli import LABEL_NAMES, read_snli, snli_path
from .text import Vocab
from .translation import FRA_ENG, parse_pairs, preprocess, words

PAD = "<pad>"
STAND_IN_VAL = 2000  # validation pairs of the stand-in when data.num_val is null


def snli_tokens(sentence: str) -> list[str]:
    """SNLI's tokens: the words between spaces (the book's `d2l.tokenize`), with a space put
    before `, . ! ?` first, as the corpus's parses separate them; case is kept."""
    spaced = "".join(" " + c if i > 0 and c in ",.!?" and sentence[i - 1] != " " else c for i, c in enumerate(sentence))
    return spaced.split()


def fra_eng_tokens(sentence: str) -> list[str]:
    """The stand-in's tokens: fra-eng's preprocessing (lower case, punctuation spaced, D2L 10.5)."""
    return words(preprocess(sentence))


# meta["tokenizer"] -> how a sentence becomes tokens
TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"snli": snli_tokens, "fra_eng": fra_eng_tokens}


def truncate_pad(ids: Sequence[int], num_steps: int, pad: int) -> list[int]:
    """The first `num_steps` ids, or all of them followed by `pad` up to `num_steps`."""
    return list(ids[:num_steps]) + [pad] * (num_steps - len(ids))


def pack(sentences: Sequence[Sequence[str]], index: Mapping[str, int], num_steps: int) -> np.ndarray:
    """Token lists -> (n, num_steps) int32 ids; unknown tokens 0 (`<unk>`)."""
    pad = index[PAD]
    rows = [truncate_pad([index.get(t, 0) for t in s], num_steps, pad) for s in sentences]
    return np.asarray(rows, np.int32).reshape(len(rows), num_steps)


def nli_dataset(train, val, num_steps: int, min_freq: int, meta: dict) -> Dataset:
    """(premises, hypotheses, labels) of token lists for training and validation -> the
    Dataset the module doc describes, the vocabulary counted on the training pairs."""
    vocab = Vocab([t for s in (*train[0], *train[1]) for t in s], min_freq, (PAD,))
    index = vocab.token_to_idx

    def inputs(split):
        return {"premise": pack(split[0], index, num_steps), "hypothesis": pack(split[1], index, num_steps)}

    labels = lambda split: np.asarray(split[2], np.int32)
    meta = meta | {"vocab": list(vocab.idx_to_token), "num_steps": num_steps,
                   "train_pairs": len(train[2]), "val_pairs": len(val[2])}
    return Dataset(inputs(train), labels(train), inputs(val), labels(val), len(LABEL_NAMES), LABEL_NAMES, meta,
                   sampling=Sampling("shuffle", drop_last=False))  # the book's loader keeps the last batch


def real_splits(cfg) -> tuple[tuple, tuple, dict]:
    path = snli_path(cfg.file, cfg.dir)
    split = lambda name, n: [part[:n] for part in read_snli(path, name)]  # noqa: E731
    train, test = split("train", cfg.num_pairs), split("test", cfg.num_val)
    if not train[2]:
        raise DataError(f"{path}: snli_1.0_train.txt holds no labelled pair")
    # the book's `d2l.tokenize`: the words between spaces (the parses already separate punctuation)
    tokenize = lambda part: [[s.split() for s in part[0]], [s.split() for s in part[1]], part[2]]  # noqa: E731
    return tokenize(train), tokenize(test), {"source": str(path), "tokenizer": "snli"}


def stand_in_splits(cfg) -> tuple[tuple, tuple, dict]:
    path = Path(cfg.file).expanduser() if cfg.file else find_or_fetch(FRA_ENG, cfg.dir)
    if not path.is_file():
        raise DataNotFoundError(f"data.file: {path} not found (data.source: stand_in reads a fra.txt of "
                                "english<TAB>french lines)")
    english = [e for e, _ in parse_pairs(path.read_text(encoding="utf-8"))]
    try:
        train, val = stand_in_pairs(english, cfg.num_pairs, cfg.num_val or STAND_IN_VAL)
    except ValueError as err:
        raise ConfigError(f"data.num_val: {path}: {err}") from None
    return train, val, {"source": f"stand-in pairs from {path} (not SNLI)", "tokenizer": "fra_eng"}


def nli_splits(cfg) -> tuple[tuple, tuple, dict]:
    """(train, val, meta) of a data section with `source`, `file`, `dir`, `num_pairs` and
    `num_val`: the SNLI corpus's pairs or the stand-in's, each split (premises, hypotheses,
    labels) of token lists and label ids; meta names the source and its tokenizer."""
    return real_splits(cfg) if cfg.source == "real" else stand_in_splits(cfg)


def snli(cfg, seed: int) -> Dataset:
    """SNLI (D2L 15.4) or its offline stand-in, as `data.source` says; neither depends on the seed."""
    train, val, meta = nli_splits(cfg)
    return nli_dataset(train, val, cfg.num_steps, cfg.min_freq, meta)


def split_pairs(meta: dict, texts: Sequence[str]) -> tuple[list[list[str]], list[list[str]]]:
    """Texts "premise | hypothesis" -> (premises, hypotheses) as token lists, tokenised as the
    data's own sentences were (`meta["tokenizer"]`).

    Raises:
        ValueError: a text without " | ", naming it.
    """
    tokenize = TOKENIZERS[meta["tokenizer"]]
    premises, hypotheses = [], []
    for text in texts:
        if " | " not in text:
            raise ValueError(f"'{text}': expected a premise and a hypothesis separated by ' | '")
        premise, hypothesis = text.split(" | ", 1)
        premises.append(tokenize(premise))
        hypotheses.append(tokenize(hypothesis))
    return premises, hypotheses


def encode_pairs(meta: dict, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Texts "premise | hypothesis" -> the model's named inputs {"premise", "hypothesis"}
    (len(texts), num_steps) int32, tokenised and looked up as the data's own (`meta` of a
    Dataset `snli` made; the book's `predict_snli`).

    Raises:
        ValueError: a text without " | ", naming it.
    """
    premises, hypotheses = split_pairs(meta, texts)
    index = {t: i for i, t in enumerate(meta["vocab"])}
    return {"premise": pack(premises, index, meta["num_steps"]), "hypothesis": pack(hypotheses, index, meta["num_steps"])}


def truncate_pair(p_tokens: list[str], h_tokens: list[str], max_len: int) -> tuple[list[str], list[str]]:
    """The book's `_truncate_pair_of_tokens`: drop the last token of the longer (the hypothesis
    on a tie) until both fit in max_len - 3, leaving room for `<cls>` and two `<sep>`."""
    p, h = list(p_tokens), list(h_tokens)
    while len(p) + len(h) > max_len - 3:
        (p if len(p) > len(h) else h).pop()
    return p, h


def bert_pair_inputs(pairs: Sequence[tuple[Sequence[str], Sequence[str]]], vocab_index,
                     max_len: int) -> dict[str, np.ndarray]:
    """(premise tokens, hypothesis tokens) pairs -> BERT's inputs (D2L 15.7, `SNLIBERTDataset`):
    "tokens" (n, max_len) int32 ids of `<cls>` p `<sep>` h `<sep>` padded with `<pad>`,
    "segments" (n, max_len) int32, 0 for `<cls>`, p and its `<sep>`, 1 for h and its `<sep>`,
    0 for padding, "valid_lens" (n,) int32 tokens before the padding. `vocab_index` maps a
    token to its id: a dict holding `<unk>` (what unknown tokens get) and `<pad>`, or a `Vocab`.
    Tokens are taken as given (the book lower-cases the sentences and splits them on spaces)."""
    if max_len < 3:
        raise ValueError(f"max_len {max_len}: BERT's pair input needs 3 places for <cls> and two <sep>")
    if isinstance(vocab_index, Mapping):
        lookup = lambda t, unk=vocab_index["<unk>"]: vocab_index.get(t, unk)
    else:
        lookup = vocab_index.__getitem__  # a Vocab: unknown tokens are its <unk>
    pad = lookup(PAD)
    tokens, segments, valid_lens = [], [], []
    for p_tokens, h_tokens in pairs:
        words_, segs = get_tokens_and_segments(*truncate_pair(p_tokens, h_tokens, max_len))
        tokens.append([lookup(t) for t in words_] + [pad] * (max_len - len(words_)))
        segments.append(segs + [0] * (max_len - len(segs)))
        valid_lens.append(len(words_))
    shape = (len(tokens), max_len)
    return {"tokens": np.asarray(tokens, np.int32).reshape(shape), "segments": np.asarray(segments, np.int32).reshape(shape),
            "valid_lens": np.asarray(valid_lens, np.int32)}


# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
NLI_SOURCES: dict = {"snli": (snli, False)}
