"""Sentiment analysis (D2L 15.1-15.3): the IMDb loader on a tiny archive in the real layout
against a port of the book's reading, the offline stand-in, BiRNN and textCNN against PyTorch
ports of the book's classes with the same weights, pretrained vectors (GloVe text and a word2vec
run), frozen tables through a training step, the 1-d demos, and `dlrun predict` on a tiny run."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import load_config
from dlrun.core.config.sentiment import BiRNNModel, IMDbData, TextCNNModel
from dlrun.core.data import load_dataset
from dlrun.core.data.spec import BatchSpec
from dlrun.core.errors import ConfigError, DataNotFoundError
from dlrun.core.nn.sentiment import birnn
from dlrun.core.nn.textcnn import corr1d, textcnn

from .conftest import CONFIGS

runner = CliRunner()
POS = ["a great movie , great acting", "great fun and a great cast\nloved it", "i loved this great film",
       "great great great"]
NEG = ["a bad movie , bad acting", "bad plot and a bad cast", "i hated this bad film", "so bad"]


def write_imdb(root, as_tar: bool):
    """aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt (and an unsup folder the book skips),
    as aclImdb_v1.tar.gz or the extracted folder; returns the path a config names."""
    files = {}
    for split, (pos, neg) in {"train": (POS, NEG), "test": (POS[:2], NEG[:2])}.items():
        for label, texts in (("pos", pos), ("neg", neg)):
            for i, text in enumerate(texts):
                files[f"aclImdb/{split}/{label}/{i}_{7 if label == 'pos' else 2}.txt"] = text
    files["aclImdb/train/unsup/0_0.txt"] = "unlabelled words"
    if not as_tar:
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
        return root / "aclImdb"
    path = root / "aclImdb_v1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            raw = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def book_load(folder, min_freq: int, num_steps: int):
    """The book's read_imdb, d2l.tokenize, d2l.Vocab (1.0: tokens sorted, <pad> reserved as in
    15.1.2) and truncate_pad, written out, over a folder listed in name order."""
    def read(is_train):
        data, labels = [], []
        for label in ("pos", "neg"):
            d = os.path.join(folder, "train" if is_train else "test", label)
            for f in sorted(os.listdir(d)):
                with open(os.path.join(d, f), "rb") as fh:
                    data.append(fh.read().decode("utf-8").replace("\n", ""))
                labels.append(1 if label == "pos" else 0)
        return data, labels

    (train, y_train), (test, y_test) = read(True), read(False)
    tokens = [line.split() for line in train]
    counts = {}
    for t in (t for line in tokens for t in line):
        counts[t] = counts.get(t, 0) + 1
    idx_to_token = sorted({"<unk>", "<pad>", *[t for t, f in counts.items() if f >= min_freq]})
    index = {t: i for i, t in enumerate(idx_to_token)}
    pad = lambda ids: ids[:num_steps] + [index["<pad>"]] * (num_steps - len(ids))  # noqa: E731
    feats = lambda lines: [[idx_to_token[i] for i in pad([index.get(t, index["<unk>"]) for t in line.split()])] for line in lines]  # noqa: E731
    return set(idx_to_token), feats(train), y_train, feats(test), y_test


@pytest.mark.parametrize("as_tar", [True, False])
def test_imdb_reads_the_real_layout_as_the_book(tmp_path, as_tar):
    path = write_imdb(tmp_path, as_tar)
    data = load_dataset(IMDbData(file=str(path), num_steps=6, min_freq=2), 0)
    vocab, x_train, y_train, x_test, y_test = book_load(write_imdb(tmp_path / "ref", False), 2, 6)
    tokens = data.meta["vocab"]
    assert tokens[:2] == ["<unk>", "<pad>"] and set(tokens) == vocab
    assert "this" in tokens and "loved" not in tokens and "hated" not in tokens  # seen twice / once
    assert [[tokens[i] for i in row] for row in data.x_train] == x_train
    assert [[tokens[i] for i in row] for row in data.x_val] == x_test
    assert data.y_train.tolist() == y_train == [1, 1, 1, 1, 0, 0, 0, 0] and data.y_val.tolist() == y_test
    assert data.x_train.dtype == np.int32 and data.x_train.shape == (8, 6) and data.label_names[1] == "positive"
    # newlines are removed, not spaces: "cast\nloved" is one token, as the book's replace('\n', '') makes it
    assert [tokens[i] for i in data.x_train[1]] == ["great", "<unk>", "and", "a", "great", "<unk>"]  # fun, castloved: once


def test_imdb_num_reviews_takes_both_labels_and_missing_data_says_where(tmp_path, monkeypatch):
    data = load_dataset(IMDbData(file=str(write_imdb(tmp_path, True)), num_steps=4, min_freq=1, num_reviews=3), 0)
    assert data.y_train.tolist() == [1, 1, 0] and data.y_val.tolist() == [1, 1, 0]
    monkeypatch.setenv("DLRUN_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError, match="aclImdb_v1.tar.gz.*01ada507287d82875905620988597833ad4e0903"):
        load_dataset(IMDbData(), 0)
    with pytest.raises(DataNotFoundError, match="data.file"):
        load_dataset(IMDbData(file=str(tmp_path / "nope.tar.gz")), 0)


def write_stand_in_sources(d):
    """A timemachine.txt and a ptb.zip (ptb/ptb.train.txt) of distinguishable vocabularies."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    tm_words, ptb_words = ["time", "machine", "traveller", "the", "of"], ["stock", "market", "the", "of", "<unk>", "N"]
    (d / "timemachine.txt").write_text("The Time Machine, by H. G. Wells\n" + " ".join(rng.choice(tm_words, 600)))
    lines = "\n".join(" ".join(rng.choice(ptb_words, 12)) for _ in range(200))
    with zipfile.ZipFile(d / "ptb.zip", "w") as zf:
        zf.writestr("ptb/ptb.train.txt", lines + "\n")
    return d


def test_stand_in_is_balanced_seeded_and_has_no_placeholders(tmp_path):
    d = write_stand_in_sources(tmp_path / "data")
    cfg = IMDbData(source="stand_in", dir=str(d), doc_words=8, num_steps=8, min_freq=1)
    a, b, c = load_dataset(cfg, 0), load_dataset(cfg, 0), load_dataset(cfg, 1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    tokens = a.meta["vocab"]
    assert not {"unk", "<unk>", "n", "N"} & set(tokens[2:])  # PTB's placeholders are dropped, not cleaned to words
    labels = np.concatenate([a.y_train, a.y_val])
    assert labels.mean() == 0.5 and abs(len(a.y_train) - len(a.y_val)) <= 1
    lengths = (a.x_train != tokens.index("<pad>")).sum(1)
    assert lengths.min() >= 2 and lengths.max() <= 8 and len(set(lengths.tolist())) > 1


def port_lstm(torch_lstm, layer, direction):
    """One direction of one layer of nn.LSTM as our fused cell's params (gates i, f, g, o ->
    i, f, o, c; W transposed; the two biases summed)."""
    sfx = f"_l{layer}" + ("_reverse" if direction else "")
    order = lambda a: np.concatenate([a[0:1], a[1:2], a[3:4], a[2:3]]).reshape(-1, *a.shape[2:])  # noqa: E731
    get = lambda name: getattr(torch_lstm, name + sfx).detach().numpy()  # noqa: E731
    h = get("weight_hh").shape[1]
    split = lambda a: a.reshape(4, h, *a.shape[1:])  # noqa: E731
    return {"w_x": jnp.asarray(order(split(get("weight_ih"))).T), "w_h": jnp.asarray(order(split(get("weight_hh"))).T),
            "b": jnp.asarray(order(split(get("bias_ih") + get("bias_hh"))))}


def test_birnn_is_the_books_with_the_same_weights():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class BiRNN(nn.Module):  # D2L 15.2.1, PyTorch
        def __init__(self, vocab_size, embed_size, num_hiddens, num_layers):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embed_size)
            self.encoder = nn.LSTM(embed_size, num_hiddens, num_layers=num_layers, bidirectional=True)
            self.decoder = nn.Linear(4 * num_hiddens, 2)

        def forward(self, inputs):
            outputs, _ = self.encoder(self.embedding(inputs.T))
            return self.decoder(torch.cat((outputs[0], outputs[-1]), dim=1))

    torch.manual_seed(0)
    net = BiRNN(11, 5, 4, 2)
    model = birnn(BiRNNModel(embed_size=5, hidden=4, layers=2), BatchSpec((7,), 2, 2, vocab=tuple(f"w{i}" for i in range(11))))
    params = {"embed0": {"w": jnp.asarray(net.embedding.weight.detach().numpy())},
              **{f"birnn{layer}": {f"branch{d}": port_lstm(net.encoder, layer, d) for d in range(2)} for layer in range(2)},
              "dense0": {"w": jnp.asarray(net.decoder.weight.detach().numpy().T), "b": jnp.asarray(net.decoder.bias.detach().numpy())}}
    shapes, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))  # init's tree, traced, not run
    assert jax.tree_util.tree_map(lambda a: a.shape, params) == jax.tree_util.tree_map(lambda a: a.shape, shapes) and not state
    x = np.random.default_rng(0).integers(0, 11, (3, 7))
    ours, _ = model.apply(params, state, jnp.asarray(x, jnp.int32))
    np.testing.assert_allclose(np.asarray(ours), net(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_birnn_init_is_the_books_xavier():
    model = birnn(BiRNNModel(embed_size=30, hidden=50, layers=1), BatchSpec((4,), 2, 2, vocab=tuple("abcd")))
    params, _ = model.init(jax.random.PRNGKey(1))
    w_x = np.asarray(params["birnn0"]["branch0"]["w_x"])  # (30, 200): xavier_uniform_ of nn.LSTM's (200, 30)
    bound = np.sqrt(6 / (30 + 200))
    assert w_x.shape == (30, 200) and np.abs(w_x).max() <= bound and np.abs(w_x).max() > 0.9 * bound


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_textcnn_is_the_books_with_the_same_weights(pool):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class TextCNN(nn.Module):  # D2L 15.3.3, PyTorch (its AdaptiveAvgPool1d; max: the text's pooling)
        def __init__(self, vocab_size, embed_size, kernel_sizes, num_channels):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embed_size)
            self.constant_embedding = nn.Embedding(vocab_size, embed_size)
            self.decoder = nn.Linear(sum(num_channels), 2)
            self.pool = nn.AdaptiveAvgPool1d(1) if pool == "avg" else nn.AdaptiveMaxPool1d(1)
            self.convs = nn.ModuleList(nn.Conv1d(2 * embed_size, c, k) for c, k in zip(num_channels, kernel_sizes))

        def forward(self, inputs):
            e = torch.cat((self.embedding(inputs), self.constant_embedding(inputs)), dim=2).permute(0, 2, 1)
            enc = torch.cat([torch.squeeze(torch.relu(self.pool(conv(e))), dim=-1) for conv in self.convs], dim=1)
            return self.decoder(enc)  # dropout is the identity in evaluation

    torch.manual_seed(0)
    net = TextCNN(9, 3, (2, 3), (4, 5))
    cfg = TextCNNModel(embed_size=3, kernel_sizes=(2, 3), channels=(4, 5), pool=pool)
    model = textcnn(cfg, BatchSpec((6,), 2, 2, vocab=tuple(f"w{i}" for i in range(9))))
    t = lambda p: jnp.asarray(p.detach().numpy())  # noqa: E731
    params = {"embeddings0": {"branch0": {"w": t(net.embedding.weight)}},
              "convs0": {f"branch{i}": {"conv1d0": {"w": t(conv.weight).transpose(2, 1, 0), "b": t(conv.bias)}}
                         for i, conv in enumerate(net.convs)},
              "dense0": {"w": t(net.decoder.weight).T, "b": t(net.decoder.bias)}}
    state = {"embeddings0": {"branch1": {"w": t(net.constant_embedding.weight)}}, "dropout0": {"rate": jnp.float32(0.5)}}
    shape_of = lambda tree: jax.tree_util.tree_map(lambda a: a.shape, tree)  # noqa: E731
    assert (shape_of(params), shape_of(state)) == shape_of(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    x = np.random.default_rng(0).integers(0, 9, (4, 6))
    ours, _ = model.apply(params, state, jnp.asarray(x, jnp.int32))
    np.testing.assert_allclose(np.asarray(ours), net(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_corr1d_is_numpys_correlate_and_the_demo_matches_the_book(tmp_path):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 9, 3)), rng.normal(size=(4, 3, 2))
    ours = np.asarray(corr1d(jnp.asarray(x), jnp.asarray(w)))
    ref = np.array([[[sum(np.correlate(x[b, :, c], w[:, c, o], "valid")[t] for c in range(3)) for o in range(2)]
                     for t in range(6)] for b in range(2)])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    result = runner.invoke(app, ["train", str(CONFIGS / "text_cnn_demo.yaml"), "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    summary = yaml.safe_load((tmp_path / "demo" / "summary.json").read_text())
    assert summary["ours"]["corr1d"] == [2, 5, 8, 11, 14, 17] and summary["ours"]["corr1d_multi_in"] == [2, 8, 14, 20, 26, 32]
    assert summary["max_difference"] == 0


def write_glove(path, words, dims=4, seed=0):
    vecs = np.random.default_rng(seed).normal(size=(len(words), dims)).round(4)
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, vecs)))
    return dict(zip(words, vecs))


def tiny_config(tmp_path, model: dict, epochs: int = 1) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = {"name": "tiny_sentiment", "seed": 0,
           "data": {"name": "imdb", "file": str(write_imdb(tmp_path, True)), "num_steps": 6, "min_freq": 1, "batch_size": 4},
           "model": model, "loss": {"name": "cross_entropy"}, "optimizer": {"name": "adam", "lr": 0.05},
           "trainer": {"epochs": epochs, "progress": "none", "checkpoint_every": 0}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def glove_run(tmp_path_factory):
    """A textCNN trained 20 epochs on the tiny IMDb archive, both tables loaded from a GloVe
    folder (its vec.txt, as d2l's): (run directory, the file's vectors by word)."""
    tmp_path = tmp_path_factory.mktemp("glove_run")
    glove = write_glove(tmp_path / "vec.txt", ["great", "bad", "movie", "the"])
    model = {"name": "textcnn", "embed_size": 4, "kernel_sizes": [2], "channels": [3], "dropout": 0.0,
             "embedding": {"file": str(tmp_path)}}
    result = runner.invoke(app, ["train", tiny_config(tmp_path, model, epochs=20), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    return tmp_path / "run", glove


def test_glove_rows_load_and_a_frozen_table_is_unchanged_by_training(glove_run, tmp_path):
    from dlrun.core.training.inference import load_run

    out, glove = glove_run
    run = load_run(out)
    vocab = run.data.meta["vocab"]
    frozen = np.asarray(run.state.model_state["embeddings0"]["branch1"]["w"])
    trained = np.asarray(run.state.params["embeddings0"]["branch0"]["w"])
    for i, word in enumerate(vocab):  # the file's vector, or zeros for a word it lacks
        np.testing.assert_array_equal(frozen[i], glove.get(word, np.zeros(4)).astype(np.float32))
    g = vocab.index("great")
    assert np.abs(trained[g] - frozen[g]).max() > 1e-3  # the other table, loaded alike, was trained
    # BiRNN's frozen table is the same layer's: model state, out of the optimizer's reach
    spec = BatchSpec((6,), 2, 2, vocab=tuple(vocab))
    cfg = BiRNNModel.model_validate({"embed_size": 4, "hidden": 3, "layers": 1, "embedding": {"file": str(out.parent / "vec.txt")}})
    params, state = jax.eval_shape(birnn(cfg, spec).init, jax.random.PRNGKey(0))
    assert "embed0" not in params and state["embed0"]["w"].shape == frozen.shape
    thawed = cfg.model_copy(update={"embedding": cfg.embedding.model_copy(update={"freeze": False})})
    params, state = jax.eval_shape(birnn(thawed, spec).init, jax.random.PRNGKey(0))
    assert "embed0" not in state and params["embed0"]["w"].shape == frozen.shape


def test_vectors_of_a_word2vec_run_and_bad_embedding_configs(tmp_path):
    from dlrun.core.nn.pretrained import pretrained_table, run_vectors

    train = tmp_path / "ptb.train.txt"
    train.write_text("a b c a b\nb c a d\n")
    run = tmp_path / "w2v"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "w2v", "data": {"name": "ptb_word2vec", "file": str(train),
                                                                          "min_freq": 1, "batch_size": 2, "subsample_t": 1.0},
                                                     "model": {"name": "skip_gram", "embed_size": 3},
                                                     "loss": {"name": "masked_sigmoid_bce"}}))
    vocab = load_dataset(load_config(run / "config.yaml").data, 0).meta["vocab"]
    table = np.arange(len(vocab) * 3, dtype=np.float32).reshape(-1, 3)
    np.savez(run / "params.npz", **{"params/embed_v/w": table, "params/embed_u/w": -table})
    vectors = run_vectors(run)
    cfg = BiRNNModel.model_validate({"embed_size": 3, "embedding": {"run": str(run)}}).embedding
    got = pretrained_table(cfg, ("<unk>", "<pad>", "b", "zzz"), 3)
    np.testing.assert_array_equal(got[2], table[vocab.index("b")])
    np.testing.assert_array_equal(got[1], 0) and np.testing.assert_array_equal(got[3], 0)
    assert vectors.tokens == vocab
    with pytest.raises(ConfigError, match="embed_size is 5"):
        pretrained_table(cfg, ("a",), 5)
    with pytest.raises(ValueError, match="exactly one of file"):
        BiRNNModel.model_validate({"embedding": {"file": "x.txt", "run": str(run)}})
    with pytest.raises(DataNotFoundError, match="model.embedding.file"):
        pretrained_table(BiRNNModel.model_validate({"embedding": {"file": str(tmp_path / "none.txt")}}).embedding, ("a",), 3)
    with pytest.raises(ConfigError, match="wider than the 4 tokens"):
        textcnn(TextCNNModel(kernel_sizes=(5,), channels=(2,)), BatchSpec((4,), 2, 2, vocab=("a", "b")))


def test_predict_labels_texts_of_a_text_classifier(glove_run):
    from dlrun.core.training.inference import load_run
    from dlrun.core.training.text_inputs import TEXT_INPUTS, classify_texts

    out, _ = glove_run
    texts = ["a great movie , great cast", "a bad movie , bad cast"]
    result = runner.invoke(app, ["predict", str(out), *texts])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["positive", "negative"]
    run = load_run(out)
    x = TEXT_INPUTS["imdb"](run.data.meta, texts)
    vocab = run.data.meta["vocab"]
    assert [vocab[i] for i in x[1]] == ["a", "bad", "movie", ",", "bad", "cast"]
    logits, _ = run.setup.model.apply(run.state.params, run.state.model_state, jnp.asarray(x))
    probs = np.asarray(jax.nn.softmax(logits, -1))
    assert [f"{p:.4f}" for _, p in classify_texts(run, texts)] == [line.split("\t")[1] for line in lines]
    np.testing.assert_allclose([p for _, p in classify_texts(run, texts)], probs.max(-1), rtol=1e-5)
    wrong = runner.invoke(app, ["predict", str(out), "--val", "3"])
    assert wrong.exit_code == 2 and "text classifier run" in wrong.output and "SENTENCES" in wrong.output
    none = runner.invoke(app, ["predict", str(out)])
    assert none.exit_code == 2 and "give the texts" in none.output
