"""Translating with a trained encoder-decoder, and scoring translations with BLEU (D2L 10.7.6).

`bleu` is the book's: exp(min(0, 1 - len_label / len_pred)) * prod_{n=1..k} p_n^(1/2^n), p_n
the clipped precision of the prediction's n-grams, for n up to min(k, len_pred) (the 1.0
edition's loop). `corpus_bleu` applies the same formula to a set of pairs, summing the clipped
matches and the n-gram counts over them and the lengths in the brevity penalty (Papineni et
al.'s corpus form), so that short sentences do not weigh as much as long ones.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..data.translation import BOS, EOS, PAD, pad_sentence, preprocess, words
from ..nn.seq2seq import beam_search, decoder_attention, greedy_decode


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _matches(pred: Sequence[str], label: Sequence[str], n: int) -> tuple[int, int]:
    """(clipped n-gram matches, n-grams of the prediction)."""
    label_counts = _ngrams(label, n)
    hits = sum(min(c, label_counts[g]) for g, c in _ngrams(pred, n).items())
    return hits, max(len(pred) - n + 1, 0)


def _score(matches: list[tuple[int, int]], len_pred: int, len_label: int) -> float:
    if len_pred == 0:
        return 0.0
    score = math.exp(min(0.0, 1.0 - len_label / len_pred))
    for n, (hits, total) in enumerate(matches, start=1):
        if hits == 0:
            return 0.0
        score *= (hits / total) ** (0.5**n)
    return score


def bleu(pred: Sequence[str], label: Sequence[str], k: int = 2) -> float:
    """The book's BLEU of one predicted token sequence against one reference."""
    return _score([_matches(pred, label, n) for n in range(1, min(k, len(pred)) + 1)], len(pred), len(label))


def corpus_bleu(preds: Sequence[Sequence[str]], labels: Sequence[Sequence[str]], k: int = 2) -> float:
    """BLEU of a set of predictions (see the module doc); for one pair it is `bleu`'s."""
    len_pred, len_label = sum(map(len, preds)), sum(map(len, labels))
    orders = min(k, max((len(p) for p in preds), default=0))
    totals = []
    for n in range(1, orders + 1):
        per_pair = [_matches(p, lab, n) for p, lab in zip(preds, labels)]
        totals.append((sum(h for h, _ in per_pair), sum(t for _, t in per_pair)))
    return _score(totals, len_pred, len_label)


def source_arrays(sentences: Sequence[str], src_vocab: Sequence[str], num_steps: int) -> tuple[jax.Array, jax.Array]:
    """Raw source sentences -> (tokens (n, num_steps), valid lengths (n,)), as the training data
    were made (preprocessed, `<eos>`, cut or padded)."""
    index = {t: i for i, t in enumerate(src_vocab)}
    rows = [pad_sentence([index.get(t, 0) for t in words(preprocess(s))], num_steps, index[EOS], index[PAD])
            for s in sentences]
    return jnp.asarray([r for r, _ in rows], jnp.int32).reshape(-1, num_steps), jnp.asarray([n for _, n in rows], jnp.int32)


def cut_at_eos(ids: Sequence[int], tgt_vocab: Sequence[str]) -> list[str]:
    out = []
    for i in ids:
        if tgt_vocab[int(i)] == EOS:
            break
        out.append(tgt_vocab[int(i)])
    return out


def translate(translator, params, meta: dict[str, Any], sentences: Sequence[str], beam_size: int | None = None,
              batch: int = 256) -> list[list[str]]:
    """Each sentence's translation as tokens: greedy, or beam search with `beam_size` (1 is greedy)."""
    tgt_vocab = meta["tgt_vocab"]
    ids = {t: i for i, t in enumerate(tgt_vocab)}
    steps = meta["num_steps"]
    if beam_size is None:
        run = jax.jit(lambda p, s, n: greedy_decode(translator, p, s, n, steps, ids[BOS]))
    else:
        run = jax.jit(lambda p, s, n: beam_search(translator, p, s, n, steps, ids[BOS], ids[EOS], ids[PAD], beam_size))
    out = []
    for i in range(0, len(sentences), batch):
        src, src_len = source_arrays(sentences[i : i + batch], meta["src_vocab"], steps)
        out += [cut_at_eos(row, tgt_vocab) for row in np.asarray(run(params, src, src_len))]
    return out


def translation_report(translator, params, meta: dict[str, Any], sentences: dict[str, str], beam_size: int) -> dict[str, Any]:
    """summary.json's `translations` (each example sentence greedily, with its BLEU) and `bleu`
    (the held-out pairs' corpus BLEU, greedy and with a beam)."""
    examples = list(sentences)
    greedy = translate(translator, params, meta, examples)
    report: dict[str, Any] = {"translations": [
        {"source": s, "translation": " ".join(t), "reference": sentences[s], "bleu": round(bleu(t, words(preprocess(sentences[s]))), 3)}
        for s, t in zip(examples, greedy)]}
    pairs = meta.get("val_pairs") or []
    if pairs:
        sources, references = [s for s, _ in pairs], [words(t) for _, t in pairs]
        report["bleu"] = {"pairs": len(pairs), "greedy": round(corpus_bleu(translate(translator, params, meta, sources), references), 4),
                          f"beam{beam_size}": round(corpus_bleu(translate(translator, params, meta, sources, beam_size), references), 4)}
    return report


def _source_tokens(sentence: str, num_steps: int) -> list[str]:
    return ([*words(preprocess(sentence)), EOS] + [PAD] * num_steps)[:num_steps]


def attention_panels(translator, params, meta: dict[str, Any], sentences: Sequence[str]) -> list[list[tuple]]:
    """Rows of heatmap panels (`core.report.plots.plot_heatmaps`) of a model with attention:
    for an RNN decoder, one panel per sentence (decoded tokens x source tokens, D2L 11.4.4);
    for a Transformer, the last sentence's encoder self-attention and decoder cross-attention,
    one panel per block and head (D2L 11.7.6). Empty for a model without attention."""
    tgt_vocab, steps = meta["tgt_vocab"], meta["num_steps"]
    ids = {t: i for i, t in enumerate(tgt_vocab)}
    src, src_len = source_arrays(sentences, meta["src_vocab"], steps)
    tokens, decoder, encoder = jax.jit(lambda p, s, n: decoder_attention(translator, p, s, n, steps, ids[BOS]))(params, src, src_len)
    if decoder is None:
        return []
    tokens, decoder = np.asarray(tokens), np.asarray(decoder)
    panels = []
    for i, sentence in enumerate(sentences):
        out = cut_at_eos(tokens[i], tgt_vocab)
        n_out, n_src = len(out) + 1, int(src_len[i])  # through <eos>, over the valid source
        queries, keys = [*out, EOS], _source_tokens(sentence, steps)[:n_src]
        panels.append((sentence, queries, keys, decoder[i, :n_out]))
    if encoder is None:  # one weight per source step: (steps, source)
        return [[(f"{s} -> {' '.join(q[:-1])}", w[:, : len(k)], q, k) for s, q, k, w in panels]]
    sentence, queries, keys, weights = panels[-1]
    enc = np.asarray(encoder)[len(sentences) - 1]  # (blocks, heads, T, T)
    n = len(keys)
    rows = [[(f"encoder block {b}, head {h}", enc[b, h, :n, :n], keys, keys) for h in range(enc.shape[1])]
            for b in range(enc.shape[0])]
    rows += [[(f"decoder block {b}, head {h} (cross)", weights[:, b, h, :n], queries, keys) for h in range(weights.shape[2])]
             for b in range(weights.shape[1])]
    return rows
