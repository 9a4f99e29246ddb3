"""BERT as models of the training loop: pretraining (D2L 14.10) and a classifier fine-tuned
from it (D2L 15.7), with the pretraining loss and its two terms.

Both take named inputs: `tokens`, `segments` (batch, T) ids and `valid_lens` (batch,); the
pretraining model also `pred_positions` (batch, P). The classifier's params are named as the
pretraining model's (`encoder`, `hidden`), so that `init_from` copies them and leaves its new
`output` layer (`exclude: [output/*]`) to its own initialisation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..data.spec import BatchSpec
from . import bert as B
from .model import Model

PRETRAIN_INPUTS = frozenset({"tokens", "segments", "valid_lens", "pred_positions"})
CLASSIFIER_INPUTS = frozenset({"tokens", "segments", "valid_lens"})


def sizes_of(cfg, vocab: int) -> B.BertSizes:
    return B.BertSizes(vocab, cfg.num_hiddens, cfg.ffn_num_hiddens, cfg.num_heads, cfg.num_blks, cfg.dropout, cfg.max_len)


def _require(cfg, spec: BatchSpec, inputs: frozenset[str], data: str) -> None:
    shape = spec.input_shape
    if not isinstance(shape, dict) or not inputs <= set(shape):
        raise ValueError(f"model.name: {cfg.name} takes {', '.join(sorted(inputs))} (data.name: {data}); "
                         f"the data's examples have shape {shape}")
    if shape["tokens"][0] > cfg.max_len:
        raise ValueError(f"model.max_len: {cfg.max_len} positions are fewer than the data's sequences ({shape['tokens'][0]} tokens)")


def bert_pretraining(cfg, spec: BatchSpec) -> Model:
    """`BERTModel` (D2L 14.8.5) over a vocabulary of `spec.output_dim` tokens: x -> {"mlm":
    (batch, P, vocab) logits at the predicted positions, "nsp": (batch, 2) logits}."""
    _require(cfg, spec, PRETRAIN_INPUTS, "bert_pretrain")
    sizes = sizes_of(cfg, spec.output_dim)

    def init(key):
        return B.bert_init(key, sizes), {}

    def apply(params, model_state, x, *, train=False, key=None):
        _, mlm, nsp = B.bert_model(params, x["tokens"], x["segments"], x["valid_lens"], x["pred_positions"], sizes,
                                   train=train, key=key)
        return {"mlm": mlm, "nsp": nsp}, model_state

    return Model(init, apply, spec.input_shape)


def bert_classifier(cfg, spec: BatchSpec) -> Model:
    """`BERTClassifier` (D2L 15.7.3): the encoder, the NSP hidden layer on `<cls>` and a dense
    `output` of `spec.output_dim` classes: x -> (batch, classes) logits. The vocabulary is the
    pretraining run's (`spec.vocab`, which the data read from its vocab.json)."""
    _require(cfg, spec, CLASSIFIER_INPUTS, "snli_bert")
    if spec.vocab is None:
        raise ValueError(f"model.name: {cfg.name} needs the data's vocabulary (the pretraining run's vocab.json)")
    sizes = sizes_of(cfg, len(spec.vocab))
    head, out = B.nsp_hidden(sizes.hidden), B.torch_dense(spec.output_dim)

    def init(key):
        k_enc, k_hid, k_out = jax.random.split(key, 3)
        return {"encoder": B.encoder_init(k_enc, sizes), "hidden": head.init(k_hid, (sizes.hidden,))[1],
                "output": out.init(k_out, (sizes.hidden,))[1]}, {}

    def apply(params, model_state, x, *, train=False, key=None):
        encoded = B.encode(params["encoder"], x["tokens"], x["segments"], x["valid_lens"], sizes, train=train, key=key)
        cls = head.apply(params["hidden"], {}, encoded[:, 0, :])[0]
        return out.apply(params["output"], {}, cls)[0], model_state

    return Model(init, apply, spec.input_shape)


# model.name -> build(cfg, spec) -> Model; every one takes named inputs
BERT_MODELS: dict = {"bert": bert_pretraining, "bert_classifier": bert_classifier}


def mlm_loss(out: dict[str, Any], y: dict[str, jax.Array]) -> jax.Array:
    """Each example's mean cross-entropy over its predicted tokens (`mlm_weights` 1), (batch,).
    The book's MXNet code averages over all predicted tokens of the batch (the same up to
    weighting examples by their number of predictions); its PyTorch code, whose
    `CrossEntropyLoss` already averages, counts the padded positions too."""
    logits, labels, w = out["mlm"], y["mlm_labels"], y["mlm_weights"]
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(ce * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1e-8)


def nsp_loss(out: dict[str, Any], y: dict[str, jax.Array]) -> jax.Array:
    """The next-sentence cross-entropy of each example, (batch,)."""
    return B.cross_entropy(out["nsp"], y["nsp_labels"])


def bert_pretraining_loss(out: dict[str, Any], y: dict[str, jax.Array]) -> jax.Array:
    """MLM + NSP (D2L 14.10.1's `_get_batch_loss_bert`), (batch,)."""
    return mlm_loss(out, y) + nsp_loss(out, y)


BERT_LOSS_PARTS = (("mlm_loss", mlm_loss), ("nsp_loss", nsp_loss))
