"""Natural language inference (D2L 15.4-15.5): the SNLI reader on files in the real format, the
offline stand-in's rules, decomposable attention against a PyTorch port of the book's code with
the same weights, `encode_pairs`, the BERT pair inputs of 15.7, and a tiny training run."""

from __future__ import annotations

import collections
import json
import os
import re
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import load_config
from dlrun.core.config.nli import DecomposableAttentionModel, SNLIData
from dlrun.core.data.nli import bert_pair_inputs, encode_pairs, snli
from dlrun.core.data.nli_pairs import GROUPS, replacements, stand_in_pairs
from dlrun.core.data.snli import parse_snli
from dlrun.core.data.spec import BatchSpec
from dlrun.core.errors import ConfigError, DataError
from dlrun.core.nn.nli import decomposable_attention

from .conftest import CONFIGS

runner = CliRunner()

HEADER = "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\n"
ROWS = [
    ("neutral", "( ( A person ) ( ( is ( training ( his horse ) ) ) . ) )", "( ( A person ) ( ( is ( at ( a diner ) ) ) . ) )"),
    ("contradiction", "( ( A person ) ( ( is ( training ( his horse ) ) ) . ) )", "( ( A person ) ( ( is outdoors ) . ) )"),
    ("-", "( ( Two women ) ( ( are embracing ) . ) )", "( ( The sisters ) ( ( are hugging ) . ) )"),
    ("entailment", "( ( Children ( smiling and waving ) ) ( at camera ) )", "( There ( ( are children ) present ) )"),
]


def write_split(path, rows):
    path.write_text(HEADER + "".join(f"{lab}\t{p}\t{h}\t(ROOT ...)\t(ROOT ...)\tx\ty\n" for lab, p, h in rows),
                    encoding="utf-8")


def book_read_snli(data_dir, is_train):
    """The book's `read_snli` (D2L 15.4.1), verbatim but for the path join."""
    def extract_text(s):
        s = re.sub('\\(', '', s)
        s = re.sub('\\)', '', s)
        s = re.sub('\\s{2,}', ' ', s)
        return s.strip()
    label_set = {'entailment': 0, 'contradiction': 1, 'neutral': 2}
    file_name = os.path.join(data_dir, 'snli_1.0_train.txt' if is_train else 'snli_1.0_test.txt')
    with open(file_name, 'r') as f:
        rows = [row.split('\t') for row in f.readlines()[1:]]
    premises = [extract_text(row[1]) for row in rows if row[0] in label_set]
    hypotheses = [extract_text(row[2]) for row in rows if row[0] in label_set]
    labels = [label_set[row[0]] for row in rows if row[0] in label_set]
    return premises, hypotheses, labels


@pytest.fixture
def snli_files(tmp_path):
    folder = tmp_path / "snli_1.0"
    folder.mkdir()
    write_split(folder / "snli_1.0_train.txt", ROWS * 3)
    write_split(folder / "snli_1.0_test.txt", ROWS[:2] + [("entailment", "( A ( cat sleeps ) )", "( A ( cat rests ) )")])
    archive = tmp_path / "snli_1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("snli_1.0_train.txt", "snli_1.0_test.txt"):
            zf.write(folder / name, f"snli_1.0/{name}")
    return folder, archive


def test_reader_is_the_books(snli_files):
    folder, _ = snli_files
    for split, is_train in (("train", True), ("test", False)):
        ours = parse_snli((folder / f"snli_1.0_{split}.txt").read_text(encoding="utf-8"))
        assert ours == book_read_snli(folder, is_train)
    premises, hypotheses, labels = parse_snli((folder / "snli_1.0_train.txt").read_text())
    assert premises[0] == "A person is training his horse ." and hypotheses[2] == "There are children present"
    assert labels[:3] == [2, 1, 0] and len(labels) == 9  # the '-' rows dropped


def test_loader_reads_the_zip_and_the_folder_alike(snli_files):
    folder, archive = snli_files
    from_zip = snli(SNLIData(file=str(archive), num_steps=6, min_freq=3), 0)
    from_folder = snli(SNLIData(file=str(folder), num_steps=6, min_freq=3), 0)
    for a, b in zip(jax.tree.leaves(from_zip[:4]), jax.tree.leaves(from_folder[:4])):
        np.testing.assert_array_equal(a, b)
    data = from_zip
    assert data.x_train["premise"].shape == (9, 6) and data.x_train["premise"].dtype == np.int32
    assert data.x_val["hypothesis"].shape == (3, 6) and data.y_val.tolist() == [2, 1, 0]
    assert data.label_names == ("entailment", "contradiction", "neutral") and data.num_classes == 3
    # the book's vocabulary: training tokens seen >= min_freq times, <unk> and <pad> reserved
    premises, hypotheses, _ = book_read_snli(folder, True)
    counts = collections.Counter(t for s in premises + hypotheses for t in s.split())
    book_vocab = sorted({"<unk>", "<pad>", *[t for t, c in counts.items() if c >= 3]})
    vocab = data.meta["vocab"]
    assert vocab[:2] == ["<unk>", "<pad>"] and sorted(vocab) == book_vocab
    # each sentence as the book's truncate_pad of vocab[tokens]
    index = {t: i for i, t in enumerate(vocab)}
    test_p, _, _ = book_read_snli(folder, False)
    for row, sentence in zip(data.x_val["premise"], test_p):
        ids = [index.get(t, 0) for t in sentence.split()][:6]
        assert row.tolist() == ids + [index["<pad>"]] * (6 - len(ids))
    assert data.spec().vocab == tuple(vocab)


def test_loader_errors_name_the_file(tmp_path, snli_files):
    bad = tmp_path / "bad" / "snli_1.0"
    bad.mkdir(parents=True)
    (bad / "snli_1.0_train.txt").write_text(HEADER + "neutral\tonly one column\n")
    with pytest.raises(DataError, match="snli_1.0_train.txt:2: expected a label and two parse trees"):
        snli(SNLIData(file=str(bad)), 0)
    (tmp_path / "not.zip").write_text("text")
    with pytest.raises(DataError, match="not a zip archive"):
        snli(SNLIData(file=str(tmp_path / "not.zip")), 0)


def write_english(path):
    """fra-eng lines whose English sides hold words of the stand-in's groups in 24 distinct
    sentences each (a word is replaced only when 20 or more sentences hold it)."""
    nouns = ["dog", "cat", "car", "house", "boy", "room", "tree", "bag", "door", "road", "city", "lake",
             "box", "cup", "bed", "bird", "fish", "shop", "book", "coat", "hat", "desk", "lamp", "ship"]
    words = ["big", "small", "happy", "sad", "cold", "hot", "old", "young"]
    lines = [f"The {n} is {w}.\tx\n" for n in nouns for w in words]
    lines += [f"The {n} {m} swim.\tx\n" for n in nouns for m in ("can", "can't", "will", "won't")]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_stand_in_rules(tmp_path):
    sentences = [s.split() for s in ["tom is big .", "mary isn't happy .", "we can swim .", "the dog is old .",
                                     "i was sad .", "they will not come .", "he is young .", "you can't lose .",
                                     "it wasn't small .", "you could win .", "no word to change here ."] * 3]
    known = {t for s in sentences for t in s}
    flip, siblings = replacements(GROUPS, known)
    assert flip["big"] == "small" and flip["isn't"] == "is" and "happy" in siblings["big"] and "was" in siblings["is"]
    assert "will" not in siblings  # "will not": an auxiliary before "not" is left alone, and "won't" is unseen
    assert "sad" in siblings["big"] and "wasn't" in siblings["is"]  # either side of the group's other pairs
    (train, val) = stand_in_pairs(sentences, None, 2, min_count=1)
    # of the 33 statements, 18 hold a word with a sibling (a modal or a verb alone in its group has none); 3 are
    # set aside for validation, and the balance leaves some of each part out
    assert 0 < len(val[2]) <= 2 and 0 < len(train[2]) <= 15 and "can" not in siblings
    for premises, hypotheses, labels in (train, val):
        for p, h, label in zip(premises, hypotheses, labels):
            cut = p.index("and")
            sides = [s for s in (p[:cut] + ["."], p[cut + 1 :]) if len(s) == len(h)]
            diffs = [[i for i in range(len(h)) if h[i] != s[i]] for s in sides]
            a, changed = min(zip(sides, diffs), key=lambda sd: len(sd[1]))  # A: the side h differs from least
            assert len(changed) == (0 if label == 0 else 1)
            if label == 1:
                assert h[changed[0]] == flip[a[changed[0]]]
            if label == 2:
                assert h[changed[0]] in siblings[a[changed[0]]] and h[changed[0]] != flip[a[changed[0]]]
    assert not {tuple(h) for h in val[1]} & {tuple(h) for h in train[1]}


def put_in(premise, hypothesis, related):
    """The word a contradiction or a neutral put in A (None for an entailment): the side of the
    premise the hypothesis equals, or differs from at one word that `related` (old, new) allows."""
    cut = premise.index("and")
    sides = [s for s in (premise[:cut] + ["."], premise[cut + 1 :]) if len(s) == len(hypothesis)]
    for side in sides:
        changed = [(v, w) for w, v in zip(hypothesis, side) if w != v]
        if not changed:
            return None
        if len(changed) == 1 and related(*changed[0]):
            return changed[0][1]
    raise AssertionError(f"{hypothesis} is no side of {premise} changed at one word")


def test_stand_in_balance_hides_the_label_from_the_word_put_in(tmp_path):
    """Each word put in is as often a contradiction's as a neutral's (within one), entailments
    as many as either: a lookup from the words put in to the label can tell entailment, no more."""
    english = [line.split("\t")[0].lower().replace(".", " .").split() for line in
               write_english(tmp_path / "fra.txt").read_text().splitlines()]
    train, val = stand_in_pairs(english, None, 40, min_count=1)
    flip, siblings = replacements(GROUPS, {t for s in english for t in s})
    related = lambda old, new: new == flip.get(old) or new in siblings.get(old, ())  # noqa: E731
    for premises, hypotheses, labels in (train, val):
        counts = collections.Counter((put_in(p, h, related), label) for p, h, label in zip(premises, hypotheses, labels))
        for word in {w for w, label in counts if w is not None}:
            assert abs(counts[word, 1] - counts[word, 2]) <= 1, word
        per_label = np.bincount(labels, minlength=3)
        assert per_label[0] <= (per_label[1] + per_label[2]) / 2 + 1 and per_label.min() > 0
    lookup = collections.defaultdict(collections.Counter)
    for p, h, label in zip(*train):
        lookup[put_in(p, h, related)][label] += 1
    guess = [(lookup[put_in(p, h, related)].most_common(1) or [(0, 0)])[0][0] for p, h in zip(*val[:2])]
    assert np.mean(np.asarray(guess) == np.asarray(val[2])) < 0.72  # 2/3, up to the draw


def test_stand_in_loader_and_encode_pairs(tmp_path):
    cfg = SNLIData(source="stand_in", file=str(write_english(tmp_path / "fra.txt")), num_steps=12, num_val=10,
                   min_freq=1)
    data = snli(cfg, 0)
    # 24 x 12 statements, 30 set aside for validation; the balance leaves some of each part out
    assert 180 < len(data.y_train) <= 24 * 12 - 30 and data.x_val["hypothesis"].shape == (10, 12)
    assert data.x_train["premise"].shape == (len(data.y_train), 12)
    assert set(np.unique(data.y_train)) == {0, 1, 2} and "not SNLI" in data.meta["source"]
    x = encode_pairs(data.meta, ["The dog is big. | The dog is small.", "the dog is old . | zzz"])
    vocab = data.meta["vocab"]
    assert [vocab[i] for i in x["premise"][0][:5]] == ["the", "dog", "is", "big", "."]
    assert [vocab[i] for i in x["hypothesis"][1][:2]] == ["<unk>", "<pad>"] and x["hypothesis"].shape == (2, 12)
    with pytest.raises(ValueError, match="'tom is big': expected a premise and a hypothesis"):
        encode_pairs(data.meta, ["tom is big"])
    with pytest.raises(ConfigError, match="data.num_val"):
        snli(cfg.model_copy(update={"num_val": 1000}), 0)


def test_encode_pairs_of_snli_keeps_case_and_splits_punctuation():
    meta = {"vocab": ["<unk>", "<pad>", "A", "man", "sleeps", "."], "num_steps": 5, "tokenizer": "snli"}
    x = encode_pairs(meta, ["A man sleeps. | a man sleeps ."])
    assert x["premise"].tolist() == [[2, 3, 4, 5, 1]] and x["hypothesis"].tolist() == [[0, 3, 4, 5, 1]]


def torch_decomposable_attention(torch, vocab, embed_size, num_hiddens):
    """The book's PyTorch `DecomposableAttention` (D2L 15.5), verbatim."""
    nn, F = torch.nn, torch.nn.functional

    def mlp(num_inputs, num_hiddens, flatten):
        net = []
        net.append(nn.Dropout(0.2))
        net.append(nn.Linear(num_inputs, num_hiddens))
        net.append(nn.ReLU())
        if flatten:
            net.append(nn.Flatten(start_dim=1))
        net.append(nn.Dropout(0.2))
        net.append(nn.Linear(num_hiddens, num_hiddens))
        net.append(nn.ReLU())
        if flatten:
            net.append(nn.Flatten(start_dim=1))
        return nn.Sequential(*net)

    class Attend(nn.Module):
        def __init__(self, num_inputs, num_hiddens):
            super().__init__()
            self.f = mlp(num_inputs, num_hiddens, flatten=False)

        def forward(self, A, B):
            f_A, f_B = self.f(A), self.f(B)
            e = torch.bmm(f_A, f_B.permute(0, 2, 1))
            beta = torch.bmm(F.softmax(e, dim=-1), B)
            alpha = torch.bmm(F.softmax(e.permute(0, 2, 1), dim=-1), A)
            return beta, alpha

    class Compare(nn.Module):
        def __init__(self, num_inputs, num_hiddens):
            super().__init__()
            self.g = mlp(num_inputs, num_hiddens, flatten=False)

        def forward(self, A, B, beta, alpha):
            return self.g(torch.cat([A, beta], dim=2)), self.g(torch.cat([B, alpha], dim=2))

    class Aggregate(nn.Module):
        def __init__(self, num_inputs, num_hiddens, num_outputs):
            super().__init__()
            self.h = mlp(num_inputs, num_hiddens, flatten=True)
            self.linear = nn.Linear(num_hiddens, num_outputs)

        def forward(self, V_A, V_B):
            return self.linear(self.h(torch.cat([V_A.sum(dim=1), V_B.sum(dim=1)], dim=1)))

    class DecomposableAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(len(vocab), embed_size)
            self.attend = Attend(embed_size, num_hiddens)
            self.compare = Compare(2 * embed_size, num_hiddens)
            self.aggregate = Aggregate(2 * num_hiddens, num_hiddens, num_outputs=3)

        def forward(self, X):
            A, B = self.embedding(X[0]), self.embedding(X[1])
            beta, alpha = self.attend(A, B)
            return self.aggregate(*self.compare(A, B, beta, alpha))

    return DecomposableAttention()


def nli_spec(vocab, steps_a, steps_b):
    return BatchSpec({"premise": (steps_a,), "hypothesis": (steps_b,)}, 3, 3, vocab=tuple(vocab))


def test_decomposable_attention_against_the_books_pytorch(key):
    torch = pytest.importorskip("torch")
    vocab = [f"w{i}" for i in range(30)]
    model = decomposable_attention(DecomposableAttentionModel(embed_size=8, num_hiddens=12), nli_spec(vocab, 7, 5))
    params, state = jax.jit(model.init)(key)  # compiled: op by op, the layers take seconds
    net = torch_decomposable_attention(torch, vocab, 8, 12).eval()
    t = lambda a: torch.tensor(np.asarray(a))
    with torch.no_grad():
        net.embedding.weight.copy_(t(params["embed"]["w"]))
        for name, seq in (("attend", net.attend.f), ("compare", net.compare.g), ("aggregate", net.aggregate.h)):
            for i, layer in enumerate(m for m in seq if isinstance(m, torch.nn.Linear)):
                layer.weight.copy_(t(params[name][f"dense{i}"]["w"]).T)
                layer.bias.copy_(t(params[name][f"dense{i}"]["b"]))
        net.aggregate.linear.weight.copy_(t(params["dense"]["w"]).T)
        net.aggregate.linear.bias.copy_(t(params["dense"]["b"]))
    rng = np.random.default_rng(0)
    p, h = rng.integers(0, 30, (4, 7)).astype(np.int32), rng.integers(0, 30, (4, 5)).astype(np.int32)
    logits, _ = jax.jit(model.apply)(params, state, {"premise": jnp.asarray(p), "hypothesis": jnp.asarray(h)})
    with torch.no_grad():
        expected = net([torch.tensor(p, dtype=torch.long), torch.tensor(h, dtype=torch.long)]).numpy()
    assert logits.shape == (4, 3)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)
    # PyTorch's initialisation: dense weights within 1/sqrt(fan_in), embeddings N(0, 1)
    assert np.abs(params["compare"]["dense0"]["w"]).max() <= 1 / np.sqrt(16)
    assert 0.7 < float(np.std(params["embed"]["w"])) < 1.3
    # dropout draws in training: two keys give two outputs
    x = {"premise": jnp.asarray(p), "hypothesis": jnp.asarray(h)}
    train = jax.jit(lambda k: model.apply(params, state, x, train=True, key=k)[0])
    y0, y1 = train(jax.random.PRNGKey(1)), train(jax.random.PRNGKey(2))
    assert not np.allclose(np.asarray(y0), np.asarray(y1))


def test_embedding_file_fills_the_datas_words(tmp_path, key):
    glove = tmp_path / "glove.txt"
    glove.write_text("w1 1 2 3 4\nzz 5 6 7 8\nw3 -1 -2 -3 -4\n", encoding="utf-8")
    vocab = ["<unk>", "<pad>", "w1", "w2", "w3"]
    cfg = DecomposableAttentionModel(embed_size=4, num_hiddens=6, embedding_file=str(glove))
    params, _ = jax.jit(decomposable_attention(cfg, nli_spec(vocab, 3, 3)).init)(key)
    np.testing.assert_array_equal(params["embed"]["w"], [[0] * 4, [0] * 4, [1, 2, 3, 4], [0] * 4, [-1, -2, -3, -4]])
    with pytest.raises(ConfigError, match="4-d vectors, model.embed_size is 5"):
        decomposable_attention(cfg.model_copy(update={"embed_size": 5}), nli_spec(vocab, 3, 3))
    with pytest.raises(ConfigError, match="premise-hypothesis pairs"):
        decomposable_attention(cfg, BatchSpec((3,), 3, 3))


def book_bert_preprocess(pairs, vocab, max_len):
    """The book's `SNLIBERTDataset._mp_worker` and `_truncate_pair_of_tokens` (D2L 15.7.2),
    with its `d2l.get_tokens_and_segments` and `vocab[tokens]`."""
    def get_tokens_and_segments(tokens_a, tokens_b=None):
        tokens = ['<cls>'] + tokens_a + ['<sep>']
        segments = [0] * (len(tokens_a) + 2)
        if tokens_b is not None:
            tokens += tokens_b + ['<sep>']
            segments += [1] * (len(tokens_b) + 1)
        return tokens, segments
    out = []
    for p_tokens, h_tokens in pairs:
        p_tokens, h_tokens = list(p_tokens), list(h_tokens)
        while len(p_tokens) + len(h_tokens) > max_len - 3:
            if len(p_tokens) > len(h_tokens):
                p_tokens.pop()
            else:
                h_tokens.pop()
        tokens, segments = get_tokens_and_segments(p_tokens, h_tokens)
        token_ids = [vocab.get(t, vocab['<unk>']) for t in tokens] + [vocab['<pad>']] * (max_len - len(tokens))
        segments = segments + [0] * (max_len - len(segments))
        out.append((token_ids, segments, len(tokens)))
    return out


def test_bert_pair_inputs_are_the_books():
    vocab = {t: i for i, t in enumerate(["<unk>", "<pad>", "<cls>", "<sep>", "a", "man", "sleeps", "is", "."])}
    pairs = [("a man sleeps .".split(), "a man is .".split()), ("a man".split(), "sleeps".split()),
             ("a man is a man is a man .".split(), "dog".split()), ("a".split(), "man is sleeps sleeps .".split())]
    for max_len in (6, 9, 12):
        ours = bert_pair_inputs(pairs, vocab, max_len)
        book = book_bert_preprocess(pairs, vocab, max_len)
        assert ours["tokens"].tolist() == [b[0] for b in book]
        assert ours["segments"].tolist() == [b[1] for b in book]
        assert ours["valid_lens"].tolist() == [b[2] for b in book] and ours["tokens"].dtype == np.int32
    assert bert_pair_inputs(pairs[:1], vocab, 12)["tokens"][0].tolist() == [2, 4, 5, 6, 8, 3, 4, 5, 7, 8, 3, 1]


def test_configs_load():
    cpu = load_config(CONFIGS / "nli_decomposable_cpu.yaml")
    full = load_config(CONFIGS / "snli_decomposable.yaml")
    assert cpu.data.source == "stand_in" and full.data.source == "real" and full.data.num_steps == 50
    assert full.model.num_hiddens == 200 and full.optimizer.lr == 0.001 and full.trainer.epochs == 4


@pytest.mark.slow  # compiling the training and evaluation programs takes most of half a minute on 2 cores
def test_tiny_training_run(tmp_path):
    fra = write_english(tmp_path / "fra.txt")
    run_dir = tmp_path / "run"
    args = ["train", str(CONFIGS / "nli_decomposable_cpu.yaml"), "--out", str(run_dir),
            "--set", f"data.file={fra}", "--set", "data.num_steps=12", "--set", "data.num_val=10",
            "--set", "data.min_freq=1", "--set", "data.batch_size=16", "--set", "model.embed_size=8",
            "--set", "model.num_hiddens=8", "--set", "trainer.epochs=3", "--set", "trainer.progress=none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"train/loss", "val/loss", "val/acc"} <= set(summary) and np.isfinite(summary["train/loss"])
