"""Premise-hypothesis pairs as BERT's inputs (D2L 15.7): the pairs of `core.data.nli` (SNLI, or
the offline stand-in) in the ids of a pretraining run's vocabulary.

The book lower-cases both sentences and splits them on spaces (`SNLIBERTDataset`); each pair is
`<cls>` premise `<sep>` hypothesis `<sep>`, the longer side cut until it fits, padded to
`max_len` (`core.data.nli.bert_pair_inputs`). With `split_clitics`, words are first split as
the pretraining corpora (PTB, WikiText-2) split them ("isn't" -> "is n't"), else every
negation would be `<unk>` to their vocabularies. A word the pretraining corpus did not keep is
`<unk>`, as it is to the book's bert.small vocabulary.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .dataset import Dataset
from .nli import bert_pair_inputs, nli_splits, split_pairs
from .sampling import Sampling
from .snli import LABEL_NAMES
from .vocab_file import load_vocab

CLITICS = ("'s", "'re", "'ve", "'ll", "'d", "'m")


def treebank_word(token: str) -> list[str]:
    """A word split as the Penn Treebank splits clitics (PTB and WikiText-2 write "is n't",
    "ca n't", "it 's"), so that a negation keeps its meaning in their vocabularies."""
    if token.endswith("n't") and len(token) > 3:
        return [token[:-3], "n't"]
    for clitic in CLITICS:
        if token.endswith(clitic) and len(token) > len(clitic):
            return [token[: -len(clitic)], clitic]
    return [token]


def lowered(split, clitics: bool) -> list[tuple[list[str], list[str]]]:
    """(premise, hypothesis) token pairs lower-cased (the book's), clitics split when asked."""
    def words(sentence):
        low = [t.lower() for t in sentence]
        return [w for t in low for w in treebank_word(t)] if clitics else low

    return [(words(p), words(h)) for p, h in zip(split[0], split[1])]


def snli_bert(cfg, seed: int) -> Dataset:
    """The pairs of `cfg.source` as {"tokens", "segments", "valid_lens"}, labels 0-2; meta["vocab"]
    is the pretraining run's (`cfg.vocab_from`).

    Raises:
        ConfigError: no `vocab_from`, or a directory without vocab.json.
    """
    if cfg.vocab_from is None:
        raise ConfigError("data.vocab_from: expected the pretraining run whose vocab.json gives the token ids "
                          "(experiment bert_nli sets it)")
    vocab = load_vocab(cfg.vocab_from, "data.vocab_from")
    if "<unk>" not in vocab or "<pad>" not in vocab:
        raise ConfigError(f"data.vocab_from: {cfg.vocab_from}'s vocab.json has no <unk> or <pad>: not a BERT vocabulary")
    index = {t: i for i, t in enumerate(vocab)}
    train, val, meta = nli_splits(cfg)
    x_train, x_val = (bert_pair_inputs(lowered(s, cfg.split_clitics), index, cfg.max_len) for s in (train, val))
    unknown = float((x_train["tokens"] == index["<unk>"]).sum() / max(1, x_train["valid_lens"].sum()))
    meta = meta | {"vocab": vocab, "max_len": cfg.max_len, "split_clitics": cfg.split_clitics, "train_pairs": len(train[2]), "val_pairs": len(val[2]),
                   "unknown_share": unknown}
    return Dataset(x_train, np.asarray(train[2], np.int32), x_val, np.asarray(val[2], np.int32), len(LABEL_NAMES),
                   LABEL_NAMES, meta, sampling=Sampling("shuffle", drop_last=False))  # the book's loader keeps the last batch


def encode_bert_pairs(meta: dict, texts) -> dict[str, np.ndarray]:
    """Texts "premise | hypothesis" -> BERT's inputs, tokenised as the data's pairs were, in the
    pretraining run's ids (`meta` of a Dataset `snli_bert` made).

    Raises:
        ValueError: a text without " | ", naming it.
    """
    premises, hypotheses = split_pairs(meta, texts)
    index = {t: i for i, t in enumerate(meta["vocab"])}
    return bert_pair_inputs(lowered((premises, hypotheses), meta["split_clitics"]), index, meta["max_len"])


# data.name -> (load(cfg, seed) -> Dataset, whether the data depends on the seed)
BERT_NLI_SOURCES: dict = {"snli_bert": (snli_bert, False)}
