"""The data set for pretraining BERT (D2L 14.9): paragraphs of sentences, next-sentence pairs,
masked tokens and padded examples.

The book draws with Python's `random`; here every draw comes from a `Draws` (a numpy
generator seeded from the run's seed), made in the book's order with the book's algorithms:
`shuffle` is the Fisher-Yates walk of `random.shuffle`, `below(n)` stands for `random.choice`'s
index. A test can feed one stream of draws to our code and to a literal port of the book's.

Corpora: WikiText-2's `wiki.train.tokens` (the book's), or The Time Machine as an offline
stand-in, its blank-line paragraphs split into sentences at full stops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..nn.bert import CLS, MASK, PAD, RESERVED, SEP, get_tokens_and_segments
from .files import RemoteFile
from .text import Vocab, clean

WIKITEXT2 = RemoteFile("wiki.train.tokens", "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
                       "3c914d17d80b1459be871a5039ac23e752a53cbe", member="wikitext-2/wiki.train.tokens")
MLM_SHARE = 0.15  # of a sequence's tokens predicted
MASK_SHARE, KEEP_SHARE = 0.8, 0.5  # of them <mask>; of the rest, half unchanged, half a random token
MIN_FREQ = 5  # the book's vocabulary keeps tokens seen at least 5 times

Paragraph = list[list[str]]  # sentences, each a list of tokens


class Draws:
    """Random draws in the book's order: `random()` in [0, 1), `below(n)` in [0, n), `shuffle`."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def random(self) -> float:
        return float(self.rng.random())

    def below(self, n: int) -> int:
        return int(self.rng.integers(n))

    def shuffle(self, items: list) -> None:
        """In place, as `random.shuffle`: for i from the last index down to 1, swap i with
        a draw below i + 1."""
        for i in reversed(range(1, len(items))):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def read_wiki(path: Path) -> list[list[str]]:
    """WikiText-2's lines that hold at least two sentences (split on ' . '), stripped and lower
    case: paragraphs of sentence strings (the book's `_read_wiki`, before its shuffle).

    Raises:
        ValueError: the file is not UTF-8 text, or has no such line (naming the file).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    paragraphs = [line.strip().lower().split(" . ") for line in lines if len(line.split(" . ")) >= 2]
    if not paragraphs:
        raise ValueError(f"{path}: no line with two sentences separated by ' . ' (expected WikiText-2's wiki.train.tokens)")
    return paragraphs


def time_machine_paragraphs(text: str) -> list[list[str]]:
    """The Time Machine as paragraphs of sentences: blank-line paragraphs, split at '.', '!'
    and '?', each sentence cleaned as `text.clean` does (letters only, lower case); paragraphs
    of at least two sentences."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        sentences = [clean(s).strip() for s in re.split(r"[.!?]", block)]
        sentences = [s for s in sentences if s]
        if len(sentences) >= 2:
            paragraphs.append(sentences)
    return paragraphs


def tokenize_paragraphs(paragraphs: Sequence[Sequence[str]]) -> list[Paragraph]:
    """Every sentence split into words on spaces (the book's `d2l.tokenize(paragraph, 'word')`)."""
    return [[sentence.split() for sentence in paragraph] for paragraph in paragraphs]


def bert_vocab(paragraphs: Sequence[Paragraph], min_freq: int = MIN_FREQ) -> Vocab:
    """`<unk>`, the reserved `<pad>`, `<mask>`, `<cls>`, `<sep>`, then the words seen at least
    `min_freq` times. The book's vocabulary holds the same tokens, sorted alphabetically."""
    return Vocab((t for p in paragraphs for s in p for t in s), min_freq, RESERVED)


def next_sentence(sentence, following, paragraphs: Sequence[Paragraph], draws: Draws):
    """(a, b, is_next): b the following sentence with probability 0.5, else a sentence of a
    random paragraph (the book's `_get_next_sentence`)."""
    if draws.random() < 0.5:
        return sentence, following, True
    paragraph = paragraphs[draws.below(len(paragraphs))]
    return sentence, paragraph[draws.below(len(paragraph))], False


def nsp_pairs(paragraph: Paragraph, paragraphs: Sequence[Paragraph], max_len: int, draws: Draws) -> list[tuple]:
    """(tokens, segments, is_next) for each consecutive pair of the paragraph, pairs longer than
    `max_len` with `<cls>` and two `<sep>` left out (the book's `_get_nsp_data_from_paragraph`)."""
    pairs = []
    for i in range(len(paragraph) - 1):
        a, b, is_next = next_sentence(paragraph[i], paragraph[i + 1], paragraphs, draws)
        if len(a) + len(b) + 3 > max_len:
            continue
        tokens, segments = get_tokens_and_segments(a, b)
        pairs.append((tokens, segments, is_next))
    return pairs


def replace_mlm_tokens(tokens: list[str], candidates: list[int], num_preds: int, vocab: Vocab,
                       draws: Draws) -> tuple[list[str], list[tuple[int, str]]]:
    """Shuffle the candidate positions and take the first `num_preds`: each becomes `<mask>`
    (80%), stays (10%) or becomes a random vocabulary token (10%) (the book's
    `_replace_mlm_tokens`). Returns (input tokens, [(position, original token)])."""
    inputs, chosen = list(tokens), []
    draws.shuffle(candidates)
    for position in candidates:
        if len(chosen) >= num_preds:
            break
        if draws.random() < MASK_SHARE:
            replacement = MASK
        elif draws.random() < KEEP_SHARE:
            replacement = tokens[position]
        else:
            replacement = vocab.idx_to_token[draws.below(len(vocab))]
        inputs[position] = replacement
        chosen.append((position, tokens[position]))
    return inputs, chosen


def mlm_example(tokens: list[str], vocab: Vocab, draws: Draws) -> tuple[list[int], list[int], list[int]]:
    """(input ids, predicted positions ascending, their original ids): max(1, round(0.15 n))
    positions of the n tokens, `<cls>` and `<sep>` never (the book's `_get_mlm_data_from_tokens`)."""
    candidates = [i for i, t in enumerate(tokens) if t not in (CLS, SEP)]
    num_preds = max(1, round(len(tokens) * MLM_SHARE))
    inputs, chosen = replace_mlm_tokens(tokens, candidates, num_preds, vocab, draws)
    chosen.sort(key=lambda pl: pl[0])
    return vocab.indices(inputs), [p for p, _ in chosen], vocab.indices([t for _, t in chosen])


def pad_bert_inputs(examples: Sequence[tuple], max_len: int, vocab: Vocab) -> dict[str, np.ndarray]:
    """Padded arrays of (ids, positions, labels, segments, is_next) examples (the book's
    `_pad_bert_inputs`): ids padded with `<pad>`, segments with 0 to `max_len`; positions,
    weights (1 per prediction, 0 after) and labels padded with 0 to round(0.15 max_len).

    Returns:
        tokens, segments (n, max_len) int32; valid_lens (n,) float32; pred_positions,
        mlm_labels (n, P) int32 and mlm_weights (n, P) float32; nsp_labels (n,) int32.
    """
    n, preds, pad = len(examples), round(max_len * MLM_SHARE), vocab[PAD]
    out = {"tokens": np.full((n, max_len), pad, np.int32), "segments": np.zeros((n, max_len), np.int32),
           "valid_lens": np.zeros((n,), np.float32), "pred_positions": np.zeros((n, preds), np.int32),
           "mlm_weights": np.zeros((n, preds), np.float32), "mlm_labels": np.zeros((n, preds), np.int32),
           "nsp_labels": np.zeros((n,), np.int32)}
    for i, (ids, positions, labels, segments, is_next) in enumerate(examples):
        out["tokens"][i, :len(ids)] = ids
        out["segments"][i, :len(segments)] = segments
        out["valid_lens"][i] = len(ids)
        out["pred_positions"][i, :len(positions)] = positions
        out["mlm_weights"][i, :len(labels)] = 1.0
        out["mlm_labels"][i, :len(labels)] = labels
        out["nsp_labels"][i] = int(is_next)
    return out


def bert_examples(paragraphs: Sequence[Sequence[str]], max_len: int, draws: Draws,
                  min_freq: int = MIN_FREQ) -> tuple[dict[str, np.ndarray], Vocab]:
    """The book's `_WikiTextDataset` from paragraphs of sentence strings: shuffled (as
    `_read_wiki` does), tokenised, next-sentence pairs, then masked tokens, padded."""
    paragraphs = list(paragraphs)
    draws.shuffle(paragraphs)
    tokenized = tokenize_paragraphs(paragraphs)
    vocab = bert_vocab(tokenized, min_freq)
    pairs = [pair for p in tokenized for pair in nsp_pairs(p, tokenized, max_len, draws)]
    examples = [(*mlm_example(tokens, vocab, draws), segments, is_next) for tokens, segments, is_next in pairs]
    return pad_bert_inputs(examples, max_len, vocab), vocab
