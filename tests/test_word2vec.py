"""Skip-gram word2vec (D2L 14.4): the model and loss against numpy and PyTorch, a tiny training
run through the one loop, and `dlrun predict --similar/--analogy` on it."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config.word2vec import SkipGramModel
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.embeddings import nearest
from dlrun.core.nn.word2vec import masked_sigmoid_bce, skip_gram, word_vectors

from .conftest import CONFIGS

runner = CliRunner()


def numpy_loss(pred, label, mask):
    """The book's loss written out: sigmoid cross-entropy, masked, mean over max_len, rescaled."""
    p = 1 / (1 + np.exp(-pred))
    bce = -(label * np.log(p) + (1 - label) * np.log(1 - p))
    return (bce * mask).mean(1) * mask.shape[1] / mask.sum(1)


def test_loss_is_the_books_on_its_example():
    pred = np.array([[1.1, -2.2, 3.3, -4.4]] * 2)
    label = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    mask = np.array([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    ours = np.asarray(masked_sigmoid_bce(jnp.asarray(pred), {"mask": jnp.asarray(mask), "label": jnp.asarray(label)}))
    sigmd = lambda x: -math.log(1 / (1 + math.exp(-x)))
    expected = [(sigmd(1.1) + sigmd(2.2) + sigmd(-3.3) + sigmd(4.4)) / 4, (sigmd(-1.1) + sigmd(-2.2)) / 2]
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    np.testing.assert_allclose(ours, numpy_loss(pred, label, mask), rtol=1e-5)


def test_loss_against_torch_on_large_logits():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    pred = rng.normal(scale=20, size=(6, 9)).astype(np.float32)
    mask = (rng.random((6, 9)) < 0.7).astype(np.float32)
    mask[:, 0] = 1
    label = ((rng.random((6, 9)) < 0.3) * mask).astype(np.float32)
    t = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(pred), torch.tensor(label),
                                                             weight=torch.tensor(mask), reduction="none").mean(1)
    t = (t / torch.tensor(mask).sum(1) * mask.shape[1]).numpy()
    ours = masked_sigmoid_bce(jnp.asarray(pred), {"mask": jnp.asarray(mask), "label": jnp.asarray(label)})
    np.testing.assert_allclose(np.asarray(ours), t, rtol=1e-5, atol=1e-6)


def spec(vocab: int, max_len: int) -> BatchSpec:
    return BatchSpec({"center": (), "contexts_negatives": (max_len,)}, vocab, vocab, None, None,
                     {"center": vocab, "contexts_negatives": vocab})


def test_skip_gram_is_a_batched_dot_product(key):
    model = skip_gram(SkipGramModel(embed_size=4), spec(20, 3))
    params, state = model.init(key)
    assert params["embed_v"]["w"].shape == params["embed_u"]["w"].shape == (20, 4)
    assert np.abs(np.asarray(params["embed_v"]["w"])).max() <= math.sqrt(6 / (20 + 4))  # Xavier-uniform's bound
    x = {"center": jnp.array([1, 7]), "contexts_negatives": jnp.array([[2, 3, 0], [4, 5, 6]])}
    out, _ = model.apply(params, state, x)
    V, U = np.asarray(params["embed_v"]["w"]), np.asarray(params["embed_u"]["w"])
    want = np.array([[V[c] @ U[j] for j in row] for c, row in zip([1, 7], [[2, 3, 0], [4, 5, 6]])])
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-6)


def test_skip_gram_refuses_other_inputs():
    with pytest.raises(ValueError, match="ptb_word2vec"):
        skip_gram(SkipGramModel(), BatchSpec((5,), 3, 3, None, None, None))


def test_gradient_against_finite_differences(key):
    model = skip_gram(SkipGramModel(embed_size=3), spec(8, 4))
    params, state = model.init(key)
    x = {"center": jnp.array([1, 2]), "contexts_negatives": jnp.array([[2, 3, 4, 0], [5, 6, 0, 0]])}
    y = {"mask": jnp.array([[1.0, 1, 1, 0], [1, 1, 0, 0]]), "label": jnp.array([[1.0, 0, 0, 0], [1, 0, 0, 0]])}

    def loss(w_v):
        p = {"embed_v": {"w": w_v}, "embed_u": params["embed_u"]}
        return jnp.mean(masked_sigmoid_bce(model.apply(p, state, x)[0], y))

    w = params["embed_v"]["w"].astype(jnp.float64) if jax.config.jax_enable_x64 else params["embed_v"]["w"]
    g = np.asarray(jax.grad(loss)(w))
    eps, (i, j) = 1e-2, (1, 0)
    num = (loss(w.at[i, j].add(eps)) - loss(w.at[i, j].add(-eps))) / (2 * eps)
    np.testing.assert_allclose(g[i, j], float(num), rtol=1e-2, atol=1e-5)
    assert (g[0] == 0).all()  # row 0 is no example's centre


def write_corpus(path, seed=0, lines=300):
    """Sentences from two vocabularies that never meet: a word's neighbours come from its own."""
    rng = np.random.default_rng(seed)
    groups = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    text = "\n".join(" ".join(rng.choice(groups[k % 2], size=8)) for k in range(lines)) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w2v")
    corpus = write_corpus(tmp / "ptb.train.txt")
    run_dir = tmp / "run"
    args = ["train", str(CONFIGS / "word2vec.yaml"), "--out", str(run_dir),
            "--set", f"data.file={corpus}", "--set", "data.min_freq=1", "--set", "data.subsample_t=1.0",
            "--set", "data.batch_size=64", "--set", "model.embed_size=8", "--set", "model.similar=[a0, zz]",
            "--set", "optimizer.lr=0.02", "--set", "trainer.epochs=4", "--set", "trainer.progress=none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run_dir


def test_tiny_training_lowers_the_loss(tiny_run):
    rows = (tiny_run / "metrics.csv").read_text().splitlines()
    header, losses = rows[0].split(","), [float(r.split(",")[rows[0].split(",").index("train/loss")]) for r in rows[1:]]
    assert "val/loss" not in header  # no validation split, as the book
    assert losses[-1] < losses[0] < 0.70  # from near ln 2 = 0.693 downwards
    summary = json.loads((tiny_run / "summary.json").read_text())
    near = [w for w, _ in summary["similar"]["a0"]]
    assert len(near) == 3 and all(w.startswith("a") for w in near)  # the group it shares sentences with
    assert summary["similar_unknown"] == ["zz"]


def test_predict_similar_and_analogy(tiny_run):
    from dlrun.core.training.inference import load_run

    run = load_run(tiny_run)
    vectors = word_vectors(run.state.params, run.data.meta["vocab"])
    result = runner.invoke(app, ["predict", str(tiny_run), "--similar", "a1", "--top", "2"])
    assert result.exit_code == 0, result.output
    i = vectors.id("a1")
    want = [vectors.tokens[j] for j, _ in nearest(vectors.W, i, 2)]
    assert [line.split(": ")[-1] for line in result.output.splitlines()[1:]] == want
    result = runner.invoke(app, ["predict", str(tiny_run), "--analogy", "a0", "a1", "b0", "--top", "1"])
    assert result.exit_code == 0 and result.output.splitlines()[0] == "a0 : a1 :: b0 :"
    assert result.output.splitlines()[1].split(": ")[-1] == vectors.analogy("a0", "a1", "b0")[0][0]
    bad = runner.invoke(app, ["predict", str(tiny_run), "--similar", "nope"])
    assert bad.exit_code == 2 and "'nope' is not in the vocabulary" in bad.output and "nearest" not in bad.output
    wrong = runner.invoke(app, ["predict", str(tiny_run), "--user", "1"])
    assert wrong.exit_code == 2 and "--similar" in wrong.output


def test_word_analogy_on_the_tiny_run(tiny_run, tmp_path):
    from dlrun.core.config import derive, load_config
    from dlrun.experiments import word_analogy

    cfg = load_config(CONFIGS / "word_analogy.yaml")
    cfg = derive(cfg, {"experiment": {"name": "word_analogy", "run": str(tiny_run)}, "trainer.progress": "none"})
    summary = word_analogy.run(cfg, tmp_path)
    assert summary["questions"] == 0 and summary["book"]["not_in_vocabulary"]  # no plurals among a0..b7
    assert (tmp_path / "summary.json").is_file()
