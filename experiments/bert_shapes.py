"""BERT's pieces checked against the book's printed shapes (D2L 14.8) and its pretraining batch
(D2L 14.9).

`bert_shapes` runs the book's demo: the encoder at its sizes (vocab 10000, 768 hidden, FFN
1024, 4 heads, 2 blocks, dropout 0.2, max_len 1000) on 2 sequences of 8 tokens, MaskLM at 3
positions each, the MLM loss of the 6 predictions, NextSentencePred and its loss of 2. At the
book's sizes the shapes come from `jax.eval_shape` (no weights are made); the same demo runs for
real at a small size, whose shapes must be the book's with its sizes put in. `max_difference`:
the number of dimensions that differ from the book's (0 when all agree). The summary also gives
the parameter counts of the demo model and of the pretraining model of D2L 14.10 (128 hidden,
FFN 256, 2 heads, 2 blocks, the book's WikiText-2 vocabulary of 20,256 tokens).

`bert_data` builds the pretraining examples (`core.data.bert_data`) from WikiText-2 or The Time
Machine and compares the shapes of a first batch with the book's print for batch 512, max_len
64; it reports the masking shares and the NSP balance beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.data import bert_data as D
from dlrun.core.data.files import find_or_fetch
from dlrun.core.data.text import TIME_MACHINE
from dlrun.core.errors import ConfigError
from dlrun.core.nn import bert as B

# D2L 14.8's printed shapes (torch.Size([...])) of its demo
BOOK_SHAPES = {"encoded_X": (2, 8, 768), "mlm_Y_hat": (2, 3, 10000), "mlm_l": (6,), "nsp_Y_hat": (2, 2), "nsp_l": (2,)}
# D2L 14.9's print of one minibatch for batch_size, max_len = 512, 64
BOOK_BATCH = {"tokens": (512, 64), "segments": (512, 64), "valid_lens": (512,), "pred_positions": (512, 10),
              "mlm_weights": (512, 10), "mlm_labels": (512, 10), "nsp_labels": (512,)}
BOOK_WIKI_VOCAB = 20256  # D2L 14.9: len(vocab) of WikiText-2 at min_freq 5
PRETRAIN = {"hidden": 128, "ffn_hidden": 256, "heads": 2, "blocks": 2}  # D2L 14.10's BERTModel


class BertShapesOptions(Section):
    name: str = "bert_shapes"
    vocab_size: int = Field(10000, gt=0, description="the demo's vocabulary (the book's 10000)")
    num_hiddens: int = Field(768, gt=0, description="the encoder's width (the book's 768)")
    ffn_num_hiddens: int = Field(1024, gt=0, description="the FFN's hidden width (the book's 1024)")
    num_heads: int = Field(4, gt=0, description="attention heads (the book's 4)")
    num_blks: int = Field(2, gt=0, description="encoder blocks (the book's 2)")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout of attention and add & norm (the book's 0.2)")
    max_len: int = Field(1000, gt=0, description="rows of the learned positional embedding (the book's 1000)")
    small_hiddens: int = Field(32, gt=0, description="the width of the demo run for real on the CPU")
    small_vocab: int = Field(100, gt=30, description="the vocabulary of the demo run for real (above the demo's labels)")


class BertDataOptions(Section):
    name: str = "bert_data"
    corpus: Literal["wikitext2", "timemachine"] = Field(
        "timemachine", description="wikitext2: the book's wiki.train.tokens; timemachine: the offline stand-in")
    file: str | None = Field(None, description="a wiki.train.tokens or timemachine.txt to read instead of searching")
    dir: str | None = Field(None, description="a directory searched first for the corpus file")
    batch_size: int = Field(512, gt=0, description="examples in the batch whose shapes are compared (the book's 512)")
    max_len: int = Field(64, ge=5, description="the longest BERT input sequence (the book's 64)")
    min_freq: int = Field(5, gt=0, description="the vocabulary keeps words seen this often (the book's 5)")


def demo(sizes: B.BertSizes, params, key) -> dict[str, Any]:
    """The book's demo on `params` (arrays or shape structs): its five outputs."""
    tokens = jax.random.randint(key, (2, 8), 0, sizes.vocab)
    segments = jnp.array([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]])
    positions, mlm_y, nsp_y = jnp.array([[1, 5, 2], [6, 1, 5]]), jnp.array([[7, 8, 9], [10, 20, 30]]), jnp.array([0, 1])
    encoded, mlm, nsp = B.bert_model(params, tokens, segments, None, positions, sizes)
    return {"encoded_X": encoded, "mlm_Y_hat": mlm, "mlm_l": B.cross_entropy(mlm.reshape(-1, sizes.vocab), mlm_y.reshape(-1)),
            "nsp_Y_hat": nsp, "nsp_l": B.cross_entropy(nsp, nsp_y)}


def mismatches(ours: dict[str, tuple], book: dict[str, tuple]) -> int:
    """Dimensions that differ, a missing or extra dimension counting as one."""
    return sum(sum(a != b for a, b in zip(ours[k], v)) + abs(len(ours[k]) - len(v)) for k, v in book.items())


def expected_at(sizes: B.BertSizes) -> dict[str, tuple]:
    """The book's shapes with `sizes`' width and vocabulary put in."""
    return {k: tuple({768: sizes.hidden, 10000: sizes.vocab}.get(d, d) for d in v) for k, v in BOOK_SHAPES.items()}


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write summary.json: our shapes beside the book's, `max_difference` and parameter counts."""
    o = validate_options(BertShapesOptions, cfg, source)
    if o.num_hiddens % o.num_heads or o.small_hiddens % o.num_heads:
        raise ConfigError(f"{source}: experiment.num_hiddens and small_hiddens must be multiples of num_heads ({o.num_heads})")
    book = B.BertSizes(o.vocab_size, o.num_hiddens, o.ffn_num_hiddens, o.num_heads, o.num_blks, o.dropout, o.max_len)
    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_tokens = jax.random.split(key)
    params = jax.eval_shape(lambda k: B.bert_init(k, book), k_init)
    shapes = {k: tuple(v.shape) for k, v in jax.eval_shape(lambda p: demo(book, p, k_tokens), params).items()}
    small = book._replace(vocab=o.small_vocab, hidden=o.small_hiddens, ffn_hidden=2 * o.small_hiddens)
    outputs = demo(small, B.bert_init(k_init, small), k_tokens)
    small_shapes = {k: tuple(v.shape) for k, v in outputs.items()}
    finite = all(bool(jnp.all(jnp.isfinite(v))) for v in outputs.values())
    pretrain = B.BertSizes(BOOK_WIKI_VOCAB, **PRETRAIN)
    summary = {
        "max_difference": float(mismatches(shapes, BOOK_SHAPES) + mismatches(small_shapes, expected_at(small))
                                + (0 if finite else 1)),
        "shapes": shapes, "book_shapes": BOOK_SHAPES, "small_shapes": small_shapes, "small_finite": finite,
        "small_losses": {"mlm_l": np.asarray(outputs["mlm_l"]).tolist(), "nsp_l": np.asarray(outputs["nsp_l"]).tolist()},
        "parameters/demo": B.parameter_count(params),
        "parameters/pretraining": B.parameter_count(jax.eval_shape(lambda k: B.bert_init(k, pretrain), k_init)),
        "pretraining_sizes": pretrain._asdict(),
    }
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def corpus_paragraphs(o: BertDataOptions) -> tuple[list[list[str]], Path]:
    if o.corpus == "wikitext2":
        path = Path(o.file).expanduser() if o.file else find_or_fetch(D.WIKITEXT2, o.dir)
        return D.read_wiki(path), path
    path = Path(o.file).expanduser() if o.file else find_or_fetch(TIME_MACHINE, o.dir)
    return D.time_machine_paragraphs(path.read_text(encoding="utf-8")), path


def run_data(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write summary.json: the first batch's shapes beside the book's (scaled to batch_size and
    max_len), `max_difference`, the masking shares and the NSP balance."""
    o = validate_options(BertDataOptions, cfg, source)
    paragraphs, path = corpus_paragraphs(o)
    data, vocab = D.bert_examples(paragraphs, o.max_len, D.Draws(np.random.default_rng(cfg.seed)), o.min_freq)
    n = len(data["tokens"])
    if n < o.batch_size:
        raise ConfigError(f"{source}: experiment.batch_size: {path} gives {n} examples at max_len {o.max_len}, "
                          f"fewer than a batch of {o.batch_size}")
    batch = {k: v[: o.batch_size] for k, v in data.items()}
    preds = round(o.max_len * D.MLM_SHARE)
    book = {k: tuple({512: o.batch_size, 64: o.max_len, 10: preds}.get(d, d) for d in v) for k, v in BOOK_BATCH.items()}
    ours = {k: tuple(v.shape) for k, v in batch.items()}
    w = data["mlm_weights"] > 0
    at = np.take_along_axis(data["tokens"], data["pred_positions"], axis=1)[w]
    summary = {
        "max_difference": float(mismatches(ours, book)), "shapes": ours, "book_shapes": book,
        "corpus": o.corpus, "source": str(path), "examples": n, "vocab": len(vocab),
        "book_vocab_wikitext2": BOOK_WIKI_VOCAB, "predictions": int(w.sum()),
        "share/mask": float(np.mean(at == vocab[B.MASK])), "share/unchanged": float(np.mean(at == data["mlm_labels"][w])),
        "share/is_next": float(data["nsp_labels"].mean()),
    }
    disk.write_json(run_dir / "summary.json", summary)
    return summary


EXPERIMENTS: dict = {
    "bert_shapes": (run, BertShapesOptions, ("max_difference",)),
    "bert_data": (run_data, BertDataOptions, ("max_difference",)),
}
