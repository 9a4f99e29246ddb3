"""Text data (D2L 9.2-9.3): cleaning, vocabulary, corpus statistics, and how an epoch walks
through a corpus (shuffled windows, random and sequential partitioning)."""

import jax
import numpy as np
import pytest

from dlrun.core.config import Config
from dlrun.core.data.sampling import Sampling, epoch_order, steps_per_epoch
from dlrun.core.data.text import Vocab, clean, clean_lines, language_model_data, ngram_freqs, tokenize, windows


def test_clean_keeps_lower_case_letters_and_single_spaces():
    assert clean("The Time-Machine, by H. G. Wells [1898]\n") == "the time machine by h g wells "
    assert tokenize("ab c", "char") == ["a", "b", " ", "c"]
    assert tokenize(" the  time machine ", "word") == ["the", "time", "machine"]
    with pytest.raises(ValueError, match="char, word or bpe"):
        tokenize("x", "byte")


def test_vocab_orders_by_frequency_and_maps_rare_and_unseen_tokens_to_unk():
    tokens = list("abbcccdddd") + ["e"]
    vocab = Vocab(tokens, min_freq=2, reserved=("<pad>", "<bos>"))
    assert vocab.idx_to_token == ["<unk>", "<pad>", "<bos>", "d", "c", "b"]
    assert vocab["d"] == 3 and vocab["a"] == 0 and vocab["e"] == 0 and vocab["zzz"] == vocab.unk == 0
    assert vocab.tokens(vocab.indices(list("dcb"))) == list("dcb")
    assert len(vocab) == 6
    # ties keep the order of first appearance
    assert Vocab(list("xyyxz")).idx_to_token == ["<unk>", "x", "y", "z"]


def test_ngram_frequencies_count_overlapping_ngrams():
    tokens = "a b a b a".split()
    assert dict(ngram_freqs(tokens, 2)) == {("a", "b"): 2, ("b", "a"): 2}
    assert ngram_freqs(tokens, 1)[0] == (("a",), 3)
    assert dict(ngram_freqs(tokens, 3)) == {("a", "b", "a"): 2, ("b", "a", "b"): 1}


def test_windows_targets_are_the_next_tokens():
    corpus = np.arange(20)
    x, y = windows(corpus, 5, 3, 4)
    np.testing.assert_array_equal(x[0], [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(x[3], [6, 7, 8, 9, 10])
    np.testing.assert_array_equal(y, x + 1)


# ------------------------------------------------------------------------- sampling


def orders(kind, n, batch, steps, epochs=8, drop_last=True):
    sampling = Sampling(kind, steps, drop_last)
    key = jax.random.PRNGKey(3)
    out = [np.asarray(epoch_order(sampling, key, e, n, batch)) for e in range(epochs)]
    assert {o.shape for o in out} == {(steps_per_epoch(sampling, n, batch), batch)}, "every epoch has one shape"
    return out


@pytest.mark.parametrize("n, batch, steps", [(1000, 4, 7), (965, 3, 35), (200, 2, 5)])
def test_sequential_partitioning_continues_each_row_and_covers_each_token_once(n, batch, steps):
    for order in orders("sequential", n, batch, steps):
        assert order.max() < n and order.min() >= 0
        # row r of batch i + 1 starts where row r of batch i ended
        np.testing.assert_array_equal(np.diff(order, axis=0), steps)
        # the windows an epoch reads cover distinct tokens: none read twice
        covered = (order[..., None] + np.arange(steps)).ravel()
        assert len(np.unique(covered)) == covered.size
        # and all but fewer than (batch + 1) * steps + batch of the corpus (its tail and the offset)
        assert covered.size > n - (batch + 1) * steps - batch


@pytest.mark.parametrize("n, batch, steps", [(1000, 4, 7), (965, 3, 35)])
def test_random_partitioning_reads_non_overlapping_windows_in_random_order(n, batch, steps):
    seen_offsets, firsts = set(), set()
    for order in orders("random", n, batch, steps, epochs=12):
        starts = order.ravel()
        assert starts.max() < n and len(np.unique(starts)) == starts.size
        offsets = set(starts % steps)
        assert len(offsets) == 1, "one offset per epoch: the windows tile the corpus"
        seen_offsets |= offsets
        assert not np.all(np.diff(starts) == steps), "the windows are shuffled"
        firsts.add(int(starts[0]))
    assert len(seen_offsets) > 1 and len(firsts) > 1, "offsets and orders differ between epochs"


def test_shuffled_windows_visit_each_window_at_most_once_per_epoch():
    for order in orders("windows", 103, 10, 5):
        assert len(np.unique(order)) == order.size == 100


def test_a_kept_partial_batch_is_padded_and_every_example_comes_once():
    for order in orders("windows", 103, 10, 5, drop_last=False):
        assert order.shape == (11, 10)
        real = order[order >= 0]
        assert sorted(real.tolist()) == list(range(103)), "every example once per epoch"
        np.testing.assert_array_equal(order[-1, 3:], -1)  # the padding sits at the end
    # nothing to pad when the batches divide the data
    assert orders("windows", 100, 10, 5, drop_last=False)[0].min() >= 0


def test_steps_per_epoch_rejects_an_unknown_sampling():
    with pytest.raises(ValueError, match="unknown sampling"):
        steps_per_epoch(Sampling("diagonal", 3), 100, 2)


# ------------------------------------------------------------------- the data set


def lm_cfg(tmp_path, text, **data):
    f = tmp_path / "text.txt"
    f.write_text(text)
    raw = {"data": {"name": "time_machine", "file": str(f), **data}, "model": {"name": "rnn_lm"}}
    return Config.model_validate(raw).data


def test_language_model_data_windows_split_train_then_val(tmp_path):
    text = "the quick brown fox jumps over the lazy dog " * 20
    cfg = lm_cfg(tmp_path, text, num_steps=6, num_train=50, num_val=30, batch_size=10)
    data = language_model_data(text, cfg)
    vocab = data.meta["vocab"]
    assert vocab[0] == "<unk>" and vocab[1] == " " and len(vocab) == data.num_classes == 28
    decode = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    assert decode(data.x_train[0]) == "the qu" and decode(data.y_train[0]) == "he qui"
    assert data.x_train.shape == (50, 6) and data.x_val.shape == (30, 6)
    assert decode(data.x_val[0]) == decode(data.x_train[49])[1:] + decode(data.y_train[49])[-1]  # the window after
    assert data.sampling == Sampling("windows", 6, drop_last=False)


def test_language_model_data_partitions_the_first_max_tokens(tmp_path):
    text = "abcdefghij" * 30
    cfg = lm_cfg(tmp_path, text, num_steps=5, sampling="sequential", max_tokens=100, num_val=10, batch_size=2)
    data = language_model_data(text, cfg)
    assert data.x_train.shape == (95, 5), "every window whose target lies within the first 100 tokens"
    vocab = data.meta["vocab"]
    assert "".join(vocab[i] for i in data.x_val[0]) == "abcde", "validation starts right after token 100"
    assert data.x_val.shape == (10, 5) and data.sampling.carries_state


def test_time_machine_statistics_match_the_book(d2l_data_dir):
    """D2L 9.2-9.3 (0.16): 3,221 lines; the(2261), i(1267), and(1245); bigram 'of the' 309,
    trigram 'the time traveller' 59; 1.0: 173,428 characters, 28 tokens."""
    text = (d2l_data_dir / "timemachine.txt").read_text()
    lines = clean_lines(text)
    assert len(lines) == 3221
    words = [w for line in lines for w in tokenize(line, "word")]
    vocab = Vocab(words)
    assert vocab.token_freqs[:3] == [("the", 2261), ("i", 1267), ("and", 1245)]
    assert ngram_freqs(words, 2)[0] == (("of", "the"), 309)
    assert ngram_freqs(words, 3)[0] == (("the", "time", "traveller"), 59)
    chars = tokenize(clean(text), "char")
    assert len(chars) == 173428 and len(Vocab(chars)) == 28


def test_corpus_statistics_of_the_time_machine_are_the_books(d2l_data_dir, tmp_path):
    from dlrun.core.config.schema import TimeMachineData
    from dlrun.core.data.text import read_time_machine
    from dlrun.experiments.corpus_stats import BOOK, corpus_stats

    stats = corpus_stats(read_time_machine(TimeMachineData(dir=str(d2l_data_dir))), top=5)
    for key in ("lines (0.16)", "char corpus (0.16)", "char corpus (1.0)", "char vocab"):
        assert stats[key] == BOOK[key], key
    for key in ("top words", "top bigrams", "top trigrams"):
        assert stats[key][: len(BOOK[key])] == BOOK[key], key


def test_zipf_slope_of_a_zipf_corpus_is_minus_one():
    from dlrun.experiments.corpus_stats import zipf_slopes

    # word r appears round(10000 / r) times: frequency proportional to 1 / rank
    words = [f"w{r}" for r in range(1, 2001) for _ in range(max(1, round(10000 / r)))]
    assert abs(zipf_slopes(words)["1-gram"] + 1.0) < 0.05
