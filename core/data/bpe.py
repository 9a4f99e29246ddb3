"""Byte pair encoding (D2L 14.6; Sennrich, Haddow and Birch 2016): learn subword symbols by
merging the most frequent pair of consecutive symbols within words, and segment words into the
longest symbols learned.

Words carry the end-of-word symbol `_`, so a sequence of subwords decodes back to text
("a_ tall er_ man_" -> "a taller man "). Pairs never cross a word boundary, so learning only
needs each word's frequency.

Ties: the most frequent pair is the first one counted, walking the words in their order
(insertion order of the word frequencies) and each word left to right, as the book's
`max(pairs, key=pairs.get)` over an insertion-ordered dict picks it.

Merging works on whole symbols, as Sennrich et al.'s reference code matches a pair only between
symbol boundaries: the book's `merge_symbols` replaces the substring "a b" of the space-joined
word, which also joins a pair whose first symbol merely ends in `a`. On the book's four words
both give the same merges; on the first 20,000 characters of The Time Machine they part at the
29th merge, after ('t', 'i') has turned "d i s t in c ..." (distinction) into "d i s tin c ...".

Segmentation is the book's longest match from the left over the learned symbols (`segment_BPE`),
not a replay of the merges in order: it needs only the symbols, which a model's vocabulary
holds, and it is what D2L 14.6 uses on new words. It may split a word otherwise than learning
did ("wells_": learned "w ell s_", longest match "we l l s_"; 1,707 of The Time Machine's
4,579 words differ after 200 merges).
"""

from __future__ import annotations

import collections
import itertools
import string
from collections.abc import Iterable, Sequence
from typing import NamedTuple

END = "_"  # end of word
UNKNOWN = "[UNK]"  # what segmentation emits for the rest of a word no symbol matches
BOOK_SYMBOLS = (*string.ascii_lowercase, END, UNKNOWN)  # the book's initial symbols

Pair = tuple[str, str]
Word = tuple[tuple[str, ...], int]  # a word's symbols and its frequency


def spaced(raw_token_freqs: dict[str, int]) -> dict[str, int]:
    """Each word as its characters separated by spaces, the book's `token_freqs`:
    {'fast_': 4} -> {'f a s t _': 4}."""
    return {" ".join(word): freq for word, freq in raw_token_freqs.items()}


def pair_counts(words: Iterable[Word]) -> dict[Pair, int]:
    """Frequency of every pair of consecutive symbols within a word, in the order first counted."""
    counts: dict[Pair, int] = collections.defaultdict(int)
    for symbols, freq in words:
        for pair in itertools.pairwise(symbols):
            counts[pair] += freq
    return counts


def most_frequent(counts: dict[Pair, int]) -> Pair:
    """The pair with the largest count; of tied pairs, the first counted.

    Raises:
        ValueError: no pair at all (every word is one symbol).
    """
    if not counts:
        raise ValueError("no pair of consecutive symbols left to merge: every word is one symbol")
    return max(counts, key=counts.__getitem__)  # max keeps the first of equal keys


def merge_word(pair: Pair, symbols: tuple[str, ...]) -> tuple[str, ...]:
    """The word's symbols with every occurrence of `pair`, left to right, joined into one."""
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def get_max_freq_pair(token_freqs: dict[str, int]) -> Pair:
    """The most frequent pair of consecutive symbols in the book's space-separated `token_freqs`."""
    return most_frequent(pair_counts((token.split(), freq) for token, freq in token_freqs.items()))


def merge_symbols(max_freq_pair: Pair, token_freqs: dict[str, int], symbols: list[str]) -> dict[str, int]:
    """The book's `merge_symbols`: append the merged symbol to `symbols` (in place, as the book
    does) and return `token_freqs` with the pair merged in every word."""
    symbols.append("".join(max_freq_pair))
    return {" ".join(merge_word(max_freq_pair, tuple(token.split()))): freq for token, freq in token_freqs.items()}


class Merges(NamedTuple):
    """What learning produced: the merged pairs in order, the symbols (the initial ones, then one
    per merge) and every word's final segmentation with its frequency."""

    pairs: tuple[Pair, ...]
    symbols: tuple[str, ...]
    words: tuple[Word, ...]


def learn(word_freqs: dict[str, int], num_merges: int, initial: Sequence[str] = BOOK_SYMBOLS) -> Merges:
    """Up to `num_merges` merges from words (each ending in `_`) and their frequencies (D2L 14.6.2).

    Learning stops early once every word is a single symbol. A word's symbols start as its
    characters, whether or not `initial` holds them.
    """
    words = [(tuple(word), freq) for word, freq in word_freqs.items()]
    pairs: list[Pair] = []
    symbols = list(initial)
    for _ in range(num_merges):
        counts = pair_counts(words)
        if not counts:
            break
        pair = most_frequent(counts)
        pairs.append(pair)
        symbols.append("".join(pair))
        words = [(merge_word(pair, s), f) if len(s) > 1 else (s, f) for s, f in words]
    return Merges(tuple(pairs), tuple(symbols), tuple(words))


def segment(word: str, symbols: set[str] | frozenset[str], longest: int) -> list[str]:
    """One word split greedily into the longest symbols from the left (the book's `segment_BPE`);
    where none matches, `[UNK]` stands for the rest of the word. `longest`: the longest symbol's
    length (no longer piece is tried)."""
    out: list[str] = []
    start = 0
    while start < len(word):
        end = min(len(word), start + longest)
        while end > start and word[start:end] not in symbols:
            end -= 1
        if end == start:
            out.append(UNKNOWN)
            break
        out.append(word[start:end])
        start = end
    return out


def segment_BPE(tokens: Sequence[str], symbols: Sequence[str]) -> list[str]:
    """The book's `segment_BPE`: each token segmented, its subwords joined by spaces."""
    table = frozenset(symbols)
    longest = max(map(len, table), default=1)
    return [" ".join(segment(token, table, longest)) for token in tokens]


def word_freqs(words: Iterable[str]) -> dict[str, int]:
    """Each word with `_` appended and its count, in order of first appearance."""
    return dict(collections.Counter(word + END for word in words))


def encode(words: Iterable[str], symbols: Iterable[str]) -> list[str]:
    """Subword tokens of a sequence of words: each word with `_` appended, segmented by longest
    match over `symbols` (the book's `segment_BPE`)."""
    table = frozenset(symbols)
    longest = max(map(len, table), default=1)
    pieces: dict[str, list[str]] = {}  # each distinct word segmented once
    tokens: list[str] = []
    for word in words:
        if word not in pieces:
            pieces[word] = segment(word + END, table, longest)
        tokens += pieces[word]
    return tokens


def decode(tokens: Iterable[str]) -> str:
    """Subword tokens back to text: joined, each `_` a space (every word then ends in a space)."""
    return "".join(tokens).replace(END, " ")
