"""Word vectors (D2L 14.4.3, 14.7): neighbours and analogies against plain numpy loops, and the
GloVe/fastText text reader on small files the tests write."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dlrun.core.nn.embeddings import WordVectors, analogy, cosine, nearest, read_text_vectors


def loop_cosine(W, x):
    out = []
    for row in W:
        out.append(sum(a * b for a, b in zip(row, x)) / np.sqrt(sum(a * a for a in row) * sum(b * b for b in x) + 1e-9))
    return np.array(out)


def loop_top(scores, k, exclude):
    pairs = sorted(((s, i) for i, s in enumerate(scores) if i not in exclude), key=lambda p: (-p[0], p[1]))
    return [i for _, i in pairs[:k]]


@pytest.fixture
def W():
    return np.random.default_rng(0).normal(size=(12, 5))


def test_cosine_and_neighbours_match_a_loop(W):
    np.testing.assert_allclose(cosine(W, W[3]), loop_cosine(W, W[3]), rtol=1e-10)
    got = nearest(W, 3, 4)
    assert [i for i, _ in got] == loop_top(loop_cosine(W, W[3]), 4, {3})
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(got))


def test_analogy_matches_a_loop_and_leaves_out_the_three(W):
    target = W[2] - W[1] + W[5]
    got = analogy(W, 1, 2, 5, k=3)
    assert [i for i, _ in got] == loop_top(loop_cosine(W, target), 3, {1, 2, 5})


def test_a_planted_analogy_is_found():
    # man : woman :: king : queen, with queen = king + (woman - man) up to a little noise
    rng = np.random.default_rng(1)
    words = ["<unk>", "man", "woman", "king", "queen", "apple", "car"]
    W = rng.normal(size=(7, 8))
    W[4] = W[3] + W[2] - W[1] + 0.01 * rng.normal(size=8)
    vectors = WordVectors(words, W)
    assert vectors.analogy("man", "woman", "king")[0][0] == "queen"
    assert vectors.similar("queen", 1)[0][0] != "queen"
    with pytest.raises(KeyError, match="'prince' is not in the vocabulary"):
        vectors.similar("prince")


def test_glove_and_fasttext_files(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("the 0.1 0.2 0.3\ncat 1 0 0\ndog 0.9 0.1 0\n", encoding="utf-8")
    v = read_text_vectors(glove)
    assert v.tokens == ["<unk>", "the", "cat", "dog"] and v.W.shape == (4, 3)
    np.testing.assert_allclose(v.W[1], [0.1, 0.2, 0.3], rtol=1e-6)
    assert (v.W[0] == 0).all() and v.similar("cat", 1)[0][0] == "dog"
    fasttext = tmp_path / "wiki.vec"
    fasttext.write_text("2 3\ncat 1 0 0\ndog 0.9 0.1 0\n", encoding="utf-8")
    assert read_text_vectors(fasttext).tokens == ["<unk>", "cat", "dog"]
    assert read_text_vectors(glove, max_words=2).tokens == ["<unk>", "the", "cat"]


def test_bad_vector_files_are_named(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the 0.1 0.2 0.3\ncat 1 0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"short.txt:2: expected a word and 3 numbers, found 2"):
        read_text_vectors(short)
    text = tmp_path / "text.txt"
    text.write_text("the 0.1 x 0.3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"text.txt:1: .*'the'.*not a number"):
        read_text_vectors(text)
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt: no word vectors"):
        read_text_vectors(empty)


def test_the_generated_analogy_set_and_its_score():
    from dlrun.experiments.word_analogy import plural_pairs, questions, score

    tokens = ["the", "share", "shares", "price", "prices", "is", "does", "do", "did", "go", "went", "bank", "banks"]
    assert plural_pairs(tokens, 10) == [("share", "shares"), ("price", "prices"), ("bank", "banks")]
    qs = questions(tokens, 10)
    assert ("share", "shares", "price", "prices", "plural -s") in qs and ("do", "did", "go", "went", "past tense") in qs
    assert len(qs) == 3 + 2
    # vectors where plural = singular + a shared offset: every plural question is right
    rng = np.random.default_rng(3)
    W = rng.normal(size=(len(tokens), 16))
    offset = rng.normal(size=16)
    for s, p in (("share", "shares"), ("price", "prices"), ("bank", "banks")):
        W[tokens.index(p)] = W[tokens.index(s)] + offset
    result = score(WordVectors(tokens, W), qs)
    assert result["by_relation"]["plural -s"] == {"questions": 3, "accuracy": 1.0}
    assert result["questions"] == 5 and result["skipped"] == 0
    expected = sum(WordVectors(tokens, W).analogy(*q[:3])[0][0] == q[3] for q in qs) / len(qs)
    assert result["accuracy"] == expected
