"""BERT pretraining through the one loop (D2L 14.10): the loss and its two terms against numpy,
PTB's paragraphs, a tiny run whose summary and vocab.json a fine-tuned run can use."""

from __future__ import annotations

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import derive, load_config
from dlrun.core.data.bert_pretrain import bert_pretrain, ptb_paragraphs
from dlrun.core.data.vocab_file import load_vocab
from dlrun.core.errors import ConfigError, DataError, DataNotFoundError
from dlrun.core.nn.bert_models import bert_pretraining_loss, mlm_loss, nsp_loss

from .conftest import CONFIGS

runner = CliRunner()


def numpy_ce(logits, labels):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, labels[..., None], -1)[..., 0]


def test_losses_against_numpy():
    rng = np.random.default_rng(0)
    mlm, nsp = rng.normal(size=(3, 4, 7)), rng.normal(size=(3, 2))
    labels, nsp_labels = rng.integers(0, 7, (3, 4)), np.array([0, 1, 1])
    w = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    out = {"mlm": jnp.asarray(mlm), "nsp": jnp.asarray(nsp)}
    y = {"mlm_labels": jnp.asarray(labels), "mlm_weights": jnp.asarray(w), "nsp_labels": jnp.asarray(nsp_labels)}
    want_mlm = (numpy_ce(mlm, labels) * w).sum(1) / w.sum(1)
    want_nsp = numpy_ce(nsp, nsp_labels)
    np.testing.assert_allclose(mlm_loss(out, y), want_mlm, rtol=1e-5)
    np.testing.assert_allclose(nsp_loss(out, y), want_nsp, rtol=1e-5)
    np.testing.assert_allclose(bert_pretraining_loss(out, y), want_mlm + want_nsp, rtol=1e-5)


def test_ptb_paragraphs_group_consecutive_sentences():
    sentences = [["a", "b"], ["c"], [], ["d", "e"], ["f"], ["g"], ["h"]]
    assert ptb_paragraphs(sentences, 3) == [["a b", "c", "d e"], ["f", "g", "h"]]
    assert ptb_paragraphs(sentences, 2) == [["a b", "c"], ["d e", "f"], ["g", "h"]]
    assert ptb_paragraphs(sentences[:4], 2) == [["a b", "c"]]  # a last run of one sentence is left out


def write_corpus(path, paragraphs=60, seed=0):
    """The Time Machine's form: blank-line paragraphs of sentences ending in full stops."""
    rng = np.random.default_rng(seed)
    words = [a + b for a in "abcdef" for b in "ghijk"]  # letters only: the reader keeps no digits
    blocks = [". ".join(" ".join(rng.choice(words, size=rng.integers(3, 8))) for _ in range(4)) + "."
              for _ in range(paragraphs)]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


TINY = ["--set", "data.corpus=timemachine", "--set", "data.batch_size=32", "--set", "data.max_len=24",
        "--set", "data.steps_per_epoch=4", "--set", "model.num_hiddens=16", "--set", "model.ffn_num_hiddens=32",
        "--set", "model.num_blks=1", "--set", "trainer.epochs=3", "--set", "trainer.progress=none"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert")
    corpus = write_corpus(tmp / "timemachine.txt")
    run_dir = tmp / "run"
    result = runner.invoke(app, ["train", str(CONFIGS / "bert_pretrain_ptb.yaml"), "--out", str(run_dir),
                                 "--set", f"data.file={corpus}", *TINY])
    assert result.exit_code == 0, result.output
    return run_dir


def test_tiny_pretraining_reports_both_losses(pretrained):
    rows = list(csv.DictReader((pretrained / "metrics.csv").open()))
    assert len(rows) == 3 and "val/loss" not in rows[0]
    for r in rows:  # the loss is the sum of its two terms, each averaged over the epoch's steps
        assert float(r["train/loss"]) == pytest.approx(float(r["train/mlm_loss"]) + float(r["train/nsp_loss"]), rel=1e-5)
    assert float(rows[-1]["train/mlm_loss"]) < float(rows[0]["train/mlm_loss"])
    summary = json.loads((pretrained / "summary.json").read_text())
    for k in ("mlm_loss", "nsp_loss"):  # the book's figure: the mean over every step (equal steps per epoch)
        assert summary[f"all_steps/{k}"] == pytest.approx(np.mean([float(r[f"train/{k}"]) for r in rows]))
    vocab = load_vocab(pretrained, "init_from.run")
    assert vocab[:5] == ["<unk>", "<pad>", "<mask>", "<cls>", "<sep>"] and "ag" in vocab


def test_loader_refuses_what_it_cannot_use(tmp_path):
    cfg = derive(load_config(CONFIGS / "bert_pretrain_ptb.yaml"), {"data.corpus": "timemachine",
                                                                    "data.file": str(tmp_path / "none.txt")})
    with pytest.raises(DataNotFoundError, match="none.txt"):
        bert_pretrain(cfg.data, 0)
    corpus = write_corpus(tmp_path / "small.txt", paragraphs=3)
    with pytest.raises(DataError, match="fewer than data.batch_size"):
        bert_pretrain(derive(cfg, {"data.file": str(corpus)}).data, 0)
    with pytest.raises(ConfigError, match="no vocab.json"):
        load_vocab(tmp_path, "init_from.run")


# ------------------------------------------------------------------ 15.7: fine-tuning the pretrained encoder


def write_fra(path):
    """fra-eng lines whose English sides hold the stand-in's words in 24 sentences each."""
    nouns = ["dog", "cat", "car", "house", "boy", "room", "tree", "bag", "door", "road", "city", "lake",
             "box", "cup", "bed", "bird", "fish", "shop", "book", "coat", "hat", "desk", "lamp", "ship"]
    words = ["big", "small", "happy", "sad", "cold", "hot", "old", "young"]
    lines = [f"The {n} is {w}.\tx\n" for n in nouns for w in words] + [f"The {n} isn't {w}.\tx\n" for n in nouns for w in words[:4]]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fine_tuned(pretrained, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert_nli")
    fra = write_fra(tmp / "fra.txt")
    run_dir = tmp / "run"
    result = runner.invoke(app, ["train", str(CONFIGS / "bert_snli_cpu.yaml"), "--out", str(run_dir),
                                 "--set", f"experiment.pretrained={pretrained}", "--set", f"data.file={fra}",
                                 "--set", "data.num_val=20", "--set", "data.max_len=24", "--set", "data.batch_size=32",
                                 "--set", "trainer.epochs=1", "--set", "trainer.progress=none"])
    assert result.exit_code == 0, result.output
    return run_dir


def test_fine_tuning_copies_the_encoder_and_reads_the_pretraining_vocabulary(pretrained, fine_tuned):
    import jax

    from dlrun.core.data import load_dataset
    from dlrun.core.training.setup import build_setup, start_state
    from dlrun.core.training.transfer import load_params, transplant

    summary = json.loads((fine_tuned / "summary.json").read_text())
    assert {"fine_tuned/val/acc", "scratch/val/acc", "fine_tuned_minus_scratch"} <= set(summary)
    assert summary["sizes"]["num_hiddens"] == 16 and summary["sizes"]["num_blks"] == 1  # the pretraining run's
    cfg = load_config(fine_tuned / "fine_tuned" / "config.yaml")
    assert cfg.data.vocab_from == str(pretrained) and cfg.init_from.exclude == ("output/*",)
    data = load_dataset(cfg.data, cfg.seed)
    vocab = load_vocab(pretrained, "data.vocab_from")
    first = data.x_train["tokens"][0][: int(data.x_train["valid_lens"][0])]
    assert data.meta["vocab"] == vocab and [vocab[i] for i in first][0] == "<cls>" and vocab[first[-1]] == "<sep>"
    state, _ = start_state(build_setup(cfg, data), jax.random.PRNGKey(0))
    named = load_params(pretrained)
    moved, copied = transplant(state, named, ("*",), ("output/*",))
    assert {c.split("/")[0] for c in copied} == {"encoder", "hidden"}  # the MLM and NSP heads stay behind
    np.testing.assert_array_equal(moved.params["encoder"]["token"], named["params/encoder/token"])


def test_predict_labels_premise_hypothesis_pairs(fine_tuned):
    result = runner.invoke(app, ["predict", str(fine_tuned / "fine_tuned"), "The dog is big. | The dog is small."])
    assert result.exit_code == 0, result.output
    assert result.output.split()[0] in ("entailment", "contradiction", "neutral")
    bad = runner.invoke(app, ["predict", str(fine_tuned / "fine_tuned"), "no bar here"])
    assert bad.exit_code == 2 and "separated by ' | '" in bad.output


def test_clitics_are_split_as_the_pretraining_corpora_split_them():
    from dlrun.core.data.bert_nli import lowered

    assert lowered(([["Tom", "isn't", "here", "."]], [["It's", "can't"]]), True) == [
        (["tom", "is", "n't", "here", "."], ["it", "'s", "ca", "n't"])]
    assert lowered(([["Isn't"]], [["it"]]), False) == [(["isn't"], ["it"])]
