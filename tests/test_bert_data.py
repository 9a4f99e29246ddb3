"""The data set for pretraining BERT (D2L 14.9): our construction against a port of the book's
code fed the same draws, the masking shares, padding, valid lengths, NSP balance, the batch
shapes the book prints, and the WikiText-2 reader on a small file in its format."""

import numpy as np
import pytest

from dlrun.core.data import bert_data as D


class BookRandom:
    """Python's `random` as the book's code calls it, answered from a `Draws` stream."""

    def __init__(self, draws):
        self.d = draws

    def random(self):
        return self.d.random()

    def choice(self, seq):
        return seq[self.d.below(len(seq))]

    def shuffle(self, x):
        for i in reversed(range(1, len(x))):  # CPython's random.shuffle
            j = self.d.below(i + 1)
            x[i], x[j] = x[j], x[i]


def book_examples(paragraphs, vocab, max_len, random):
    """The book's _get_next_sentence ... _pad_bert_inputs, ported line by line (lists, no torch)."""

    def get_next_sentence(sentence, next_sentence, paragraphs):
        if random.random() < 0.5:
            is_next = True
        else:
            next_sentence = random.choice(random.choice(paragraphs))
            is_next = False
        return sentence, next_sentence, is_next

    def nsp_from_paragraph(paragraph):
        out = []
        for i in range(len(paragraph) - 1):
            a, b, is_next = get_next_sentence(paragraph[i], paragraph[i + 1], paragraphs)
            if len(a) + len(b) + 3 > max_len:
                continue
            out.append((["<cls>"] + a + ["<sep>"] + b + ["<sep>"], [0] * (len(a) + 2) + [1] * (len(b) + 1), is_next))
        return out

    def replace(tokens, candidates, num_preds):
        mlm_input = [t for t in tokens]
        chosen = []
        random.shuffle(candidates)
        for p in candidates:
            if len(chosen) >= num_preds:
                break
            if random.random() < 0.8:
                masked = "<mask>"
            else:
                masked = tokens[p] if random.random() < 0.5 else random.choice(vocab.idx_to_token)
            mlm_input[p] = masked
            chosen.append((p, tokens[p]))
        return mlm_input, chosen

    def mlm(tokens):
        candidates = [i for i, t in enumerate(tokens) if t not in ["<cls>", "<sep>"]]
        inputs, chosen = replace(tokens, candidates, max(1, round(len(tokens) * 0.15)))
        chosen = sorted(chosen, key=lambda x: x[0])
        return vocab.indices(inputs), [v[0] for v in chosen], vocab.indices([v[1] for v in chosen])

    examples = []
    for paragraph in paragraphs:
        examples.extend(nsp_from_paragraph(paragraph))
    examples = [mlm(tokens) + (segments, is_next) for tokens, segments, is_next in examples]
    p = round(max_len * 0.15)
    out = {k: [] for k in ("tokens", "segments", "valid_lens", "pred_positions", "mlm_weights", "mlm_labels", "nsp_labels")}
    for ids, positions, labels, segments, is_next in examples:
        out["tokens"].append(ids + [vocab["<pad>"]] * (max_len - len(ids)))
        out["segments"].append(segments + [0] * (max_len - len(segments)))
        out["valid_lens"].append(len(ids))
        out["pred_positions"].append(positions + [0] * (p - len(positions)))
        out["mlm_weights"].append([1.0] * len(labels) + [0.0] * (p - len(positions)))
        out["mlm_labels"].append(labels + [0] * (p - len(labels)))
        out["nsp_labels"].append(int(is_next))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture
def paragraphs(d2l_data_dir):
    return D.time_machine_paragraphs((d2l_data_dir / "timemachine.txt").read_text(encoding="utf-8"))


def test_same_draws_give_the_books_examples(paragraphs):
    ours, vocab = D.bert_examples(paragraphs[:150], 32, D.Draws(np.random.default_rng(3)), min_freq=2)
    book_random = BookRandom(D.Draws(np.random.default_rng(3)))
    shuffled = list(paragraphs[:150])
    book_random.shuffle(shuffled)
    book = book_examples(D.tokenize_paragraphs(shuffled), vocab, 32, book_random)
    assert len(ours["tokens"]) > 100
    for k in book:
        np.testing.assert_array_equal(ours[k], book[k], err_msg=k)
    # other draws give other examples: the comparison can fail
    other, _ = D.bert_examples(paragraphs[:150], 32, D.Draws(np.random.default_rng(4)), min_freq=2)
    assert not (other["tokens"].shape == ours["tokens"].shape and np.array_equal(other["tokens"], ours["tokens"]))


def test_masking_shares_padding_and_nsp_balance(paragraphs):
    max_len = 64
    batch, vocab = D.bert_examples(paragraphs, max_len, D.Draws(np.random.default_rng(0)))
    n = len(batch["tokens"])
    assert n > 1000
    valid = batch["valid_lens"].astype(int)
    pos = np.arange(max_len)[None, :]
    assert np.all(valid <= max_len) and np.all(valid >= 5)
    beyond = pos >= valid[:, None]
    assert np.all(batch["tokens"][beyond] == vocab["<pad>"])
    predicted = np.zeros_like(beyond)
    np.put_along_axis(predicted, batch["pred_positions"], batch["mlm_weights"] > 0, axis=1)
    # inside the valid length, <pad> appears only where a random replacement drew it
    assert not np.any((batch["tokens"] == vocab["<pad>"]) & ~beyond & ~predicted)
    assert np.all(batch["segments"][pos >= valid[:, None]] == 0)
    assert np.all(batch["tokens"][:, 0] == vocab["<cls>"])
    assert np.all(batch["tokens"][np.arange(n), valid - 1] == vocab["<sep>"])
    count = batch["mlm_weights"].sum(1).astype(int)
    np.testing.assert_array_equal(count, np.maximum(1, np.round(valid * 0.15)))
    # the chosen positions hold <mask> 80%, the original 10% (+ random hits), a random token 10%
    w = batch["mlm_weights"] > 0
    rows = np.repeat(np.arange(n), batch["pred_positions"].shape[1]).reshape(w.shape)
    at = batch["tokens"][rows, batch["pred_positions"]][w]
    labels = batch["mlm_labels"][w]
    m = len(at)
    masked, kept = np.mean(at == vocab["<mask>"]), np.mean(at == labels)
    sd = np.sqrt(0.8 * 0.2 / m)
    assert abs(masked - 0.8) < 4 * sd
    assert abs(kept - (0.1 + 0.1 / len(vocab))) < 4 * np.sqrt(0.1 * 0.9 / m)
    assert np.all(batch["pred_positions"][w] > 0)  # never <cls>
    assert np.all(np.diff(batch["pred_positions"], axis=1)[w[:, 1:]] > 0)  # ascending, weights a prefix
    share = batch["nsp_labels"].mean()
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / n) + 0.02  # pairs too long are dropped more often when random
    assert batch["tokens"].shape == (n, 64) and batch["pred_positions"].shape == (n, 10)


def test_wikitext_reader_on_a_file_in_its_format(tmp_path):
    path = tmp_path / "wiki.train.tokens"
    path.write_text(" \n = Valkyria Chronicles III = \n \n"
                    " Senjō no Valkyria 3 is a game . It is the third game . The game began in 2010 . \n"
                    " A single sentence without a full stop \n"
                    " Two Sentences Here . And Here \n", encoding="utf-8")
    paragraphs = D.read_wiki(path)
    assert paragraphs == [["senjō no valkyria 3 is a game", "it is the third game", "the game began in 2010 ."],
                          ["two sentences here", "and here"]]
    bad = tmp_path / "bad.tokens"
    bad.write_text("no sentences\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tokens"):
        D.read_wiki(bad)
    assert D.WIKITEXT2.sha1 == "3c914d17d80b1459be871a5039ac23e752a53cbe"


def test_shuffle_is_pythons_algorithm():
    import random

    class Same(random.Random):
        """random.Random whose _randbelow answers from the same numpy stream."""

        def __init__(self, draws):
            super().__init__(0)
            self.d = draws

        def _randbelow(self, n):
            return self.d.below(n)

    items = list(range(30))
    ours = list(items)
    D.Draws(np.random.default_rng(5)).shuffle(ours)
    theirs = list(items)
    Same(D.Draws(np.random.default_rng(5))).shuffle(theirs)
    assert ours == theirs and ours != items


def test_experiment_compares_the_books_batch_shapes(tmp_path, d2l_data_dir):
    from dlrun.core.config import Config, ConfigError
    from dlrun.experiments import bert_shapes as X

    cfg = Config.model_validate({"experiment": {"name": "bert_data", "batch_size": 64, "max_len": 32,
                                                   "dir": str(d2l_data_dir)}})
    summary = X.run_data(cfg, tmp_path)
    assert summary["max_difference"] == 0.0
    assert summary["shapes"]["pred_positions"] == (64, 5) and (tmp_path / "summary.json").is_file()
    too_many = Config.model_validate({"experiment": {"name": "bert_data", "batch_size": 10**6,
                                                       "dir": str(d2l_data_dir)}})
    with pytest.raises(ConfigError, match="batch_size"):
        X.run_data(too_many, tmp_path, "x.yaml")


def test_wikitext_corpus_through_the_experiment(tmp_path):
    from dlrun.core.config import Config
    from dlrun.experiments import bert_shapes as X

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    lines = [" = Heading = \n", " \n"]
    for _ in range(40):
        sentences = [" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(rng.integers(2, 6))]
        lines.append(" " + " . ".join(s.capitalize() for s in sentences) + " . \n")
    path = tmp_path / "wiki.train.tokens"
    path.write_text("".join(lines), encoding="utf-8")
    cfg = Config.model_validate({"experiment": {"name": "bert_data", "corpus": "wikitext2", "file": str(path),
                                                "batch_size": 16, "max_len": 20}})
    summary = X.run_data(cfg, tmp_path)
    assert summary["max_difference"] == 0.0 and summary["shapes"]["tokens"] == (16, 20)
    # <unk>, the four reserved tokens, the twelve words (lower case) and the "." that ends each
    # line's last sentence (the book splits on ' . ', so a line's final full stop stays)
    assert summary["vocab"] == 5 + 12 + 1
