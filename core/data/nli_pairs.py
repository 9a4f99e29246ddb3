"""An offline stand-in for SNLI (D2L 15.4): inference pairs built by rule from real English
sentences (the English side of fra-eng, D2L 10.5). It is not SNLI; it exercises the same
models on the same kind of examples where the corpus cannot be downloaded.

Every pair starts from a sentence A that holds a word of `GROUPS` (an adjective, a verb or a
noun with an antonym, or an auxiliary with its negation), and a second sentence B drawn from
the other sentences. The premise is "A and B" or "B and A" (A's full stop dropped), so every
premise has the same shape; the hypothesis is A, changed at one such word w:

- entailment (0): A itself (A and B entails A);
- contradiction (1): w replaced by its antonym or negation ("is" -> "isn't", "big" -> "small");
- neutral (2): w replaced by another word of its group that is neither ("big" -> "happy" or
  "sad", "is" -> "was" or "wasn't", "can" -> "will").

Why these rules: hypotheses of all three labels have A's length and words but at most one, and
the words put in come from the same lists, which occur in premises too. Drawn freely, the word
put in would still give the label away ("isn't" is mostly a contradiction's, since "is" is
commoner than "wasn't"): so pairs are drawn under a balance, each word put in as often by a
contradiction as by a neutral (within one pair), and entailments as many as either. What a
model must learn is to compare: which word of the premise the hypothesis changed, and whether
the new one is its antonym. A bag of the hypothesis's words missing from the premise can then
tell entailment and no more (at most 2/3). Labels are drawn uniformly before the balance; the
pairs are the same for every run seed (a fixed generator, as a file would be).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

VAL_RESERVE = 3  # sentences set aside per validation pair asked for: the balance leaves about a third out

# groups of (word, its antonym or negation); a neutral replacement is another word of the group
GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "adjective": (("big", "small"), ("tall", "short"), ("good", "bad"), ("happy", "sad"), ("hot", "cold"),
                  ("old", "young"), ("rich", "poor"), ("early", "late"), ("right", "wrong"), ("fast", "slow"),
                  ("easy", "difficult"), ("full", "empty"), ("clean", "dirty"), ("strong", "weak"), ("alive", "dead"),
                  ("awake", "asleep"), ("cheap", "expensive"), ("safe", "dangerous"), ("busy", "free"),
                  ("heavy", "light"), ("open", "closed"), ("true", "false"), ("beautiful", "ugly"), ("wet", "dry"),
                  ("smart", "stupid"), ("sick", "healthy"), ("polite", "rude"), ("innocent", "guilty"),
                  ("possible", "impossible"), ("interesting", "boring"), ("married", "single"), ("quiet", "noisy")),
    "be": (("is", "isn't"), ("was", "wasn't")),
    "be_plural": (("are", "aren't"), ("were", "weren't")),
    "do": (("do", "don't"), ("did", "didn't"), ("does", "doesn't")),
    "modal": (("can", "can't"), ("could", "couldn't"), ("will", "won't"), ("would", "wouldn't"),
              ("should", "shouldn't"), ("must", "mustn't")),
    "verb": (("love", "hate"), ("win", "lose"), ("won", "lost"), ("remember", "forget"), ("agree", "disagree"),
             ("buy", "sell"), ("bought", "sold"), ("accept", "refuse"), ("arrived", "left"), ("start", "stop")),
    "person": (("man", "woman"), ("boy", "girl"), ("men", "women"), ("boys", "girls")),
    "family": (("brother", "sister"), ("father", "mother"), ("son", "daughter"), ("husband", "wife")),
    "quantifier": (("everyone", "nobody"), ("everything", "nothing"), ("always", "never")),
    "time": (("day", "night"), ("morning", "evening")),
}


def replacements(groups: dict[str, tuple[tuple[str, str], ...]], known: set[str]) -> tuple[dict, dict]:
    """(flip, siblings) over the words in `known` (both words of a pair): flip[w] is w's
    antonym or negation, siblings[w] the group's other words (either side of its other pairs)."""
    flip: dict[str, str] = {}
    siblings: dict[str, list[str]] = collections.defaultdict(list)
    for pairs in groups.values():
        kept = [p for p in pairs if p[0] in known and p[1] in known]
        for i, pair in enumerate(kept):
            for side in (0, 1):
                flip[pair[side]] = pair[1 - side]
                siblings[pair[side]] += [w for j, q in enumerate(kept) if j != i for w in q]
    return flip, {w: s for w, s in siblings.items() if s}


def statements(sentences: Sequence[Sequence[str]], max_len: int) -> list[list[str]]:
    """Distinct sentences that end with a full stop, 3 to `max_len` tokens, in first-seen order."""
    seen = dict.fromkeys(tuple(s) for s in sentences if 3 <= len(s) <= max_len and s[-1] == ".")
    return [list(s) for s in seen]


def spots(sentence: Sequence[str], siblings: dict[str, list[str]]) -> list[int]:
    """The positions of the words that can be replaced; an auxiliary before "not" is left alone
    ("aren't not" would read as a double negation)."""
    return [i for i, w in enumerate(sentence) if w in siblings and tuple(sentence[i + 1 : i + 2]) != ("not",)]


class Balance:
    """Running counts that keep each word put in as often by a contradiction as by a neutral
    (within one), and entailments no more than half of the two together (within one)."""

    def __init__(self):
        self.gap: dict[str, int] = collections.Counter()  # contradictions - neutrals, per word put in
        self.changed, self.entailed = 0, 0

    def neutral_word(self, candidates: Sequence[str], rng: np.random.Generator) -> str | None:
        """The candidate a neutral may put in: one a contradiction is ahead on, else any with no
        neutral ahead (a random one among the best), None if every one has."""
        best = max(self.gap[w] for w in candidates)
        if best < 0:
            return None
        tied = [w for w in candidates if self.gap[w] == best]
        return tied[int(rng.integers(len(tied)))]

    def accepts(self, label: int, word: str | None) -> bool:
        if label == 0:
            return 2 * self.entailed <= self.changed
        return self.gap[word] <= 0 if label == 1 else self.gap[word] >= 0

    def add(self, label: int, word: str | None) -> None:
        if label == 0:
            self.entailed += 1
            return
        self.changed += 1
        self.gap[word] += 1 if label == 1 else -1


def make_pairs(sentences: Sequence[Sequence[str]], count: int, rng: np.random.Generator,
               flip: dict[str, str], siblings: dict[str, list[str]], others: Sequence[Sequence[str]]):
    """Up to `count` pairs, one per sentence that holds a replaceable word (in order), each with
    a B from `others`, the label drawn uniformly and the pair left out where it would break the
    `Balance`: lists (premises, hypotheses, labels) of token lists and label ids."""
    premises, hypotheses, labels = [], [], []
    balance = Balance()
    for a in sentences:
        if len(labels) == count:
            break
        where = spots(a, siblings)
        if not where:
            continue
        label, at = int(rng.integers(3)), where[int(rng.integers(len(where)))]
        j = int(rng.integers(len(others)))
        b = others[j] if others[j] != a else others[(j + 1) % len(others)]
        first_a = rng.random() < 0.5
        word = {0: None, 1: flip[a[at]], 2: balance.neutral_word([w for w in siblings[a[at]] if w != flip[a[at]]], rng)}[label]
        if (label == 2 and word is None) or not balance.accepts(label, word):
            continue
        balance.add(label, word)
        hyp = list(a)
        if word is not None:
            hyp[at] = word
        first, second = (a, b) if first_a else (b, a)
        premises.append([*first[:-1], "and", *second])
        hypotheses.append(hyp)
        labels.append(label)
    return premises, hypotheses, labels


def stand_in_pairs(sentences: Sequence[Sequence[str]], num_train: int | None, num_val: int, seed: int = 0,
                   min_count: int = 20, max_len: int = 12):
    """Training and validation pairs (each (premises, hypotheses, labels), as `make_pairs`) from
    tokenised English sentences: the statements are shuffled with `seed`, the validation pairs'
    A sentences come from the last ones (up to VAL_RESERVE x `num_val` of them, since the
    balance leaves some out) and the training pairs' from the rest (B from anywhere), so no
    validation hypothesis is a training one. Only words seen `min_count` times or more are
    replaced, so that the vocabulary keeps them.

    Raises:
        ValueError: fewer statements with a replaceable word than 2 x `num_val`.
    """
    pool = statements(sentences, max_len)
    counts = collections.Counter(t for s in pool for t in s)
    flip, siblings = replacements(GROUPS, {w for w, c in counts.items() if c >= min_count})
    rng = np.random.default_rng(seed)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    usable = [s for s in pool if spots(s, siblings)]
    if len(usable) < 2 * num_val:
        raise ValueError(f"{len(usable)} sentences hold a word to replace; {num_val} validation pairs and the "
                         "training pairs need at least twice as many")
    reserve = min(VAL_RESERVE * num_val, len(usable) // 2)
    train_a, val_a = usable[: len(usable) - reserve], usable[len(usable) - reserve :]
    n_train = len(train_a) if num_train is None else min(num_train, len(train_a))
    return (make_pairs(train_a, n_train, rng, flip, siblings, pool),
            make_pairs(val_a, num_val, rng, flip, siblings, pool))
