"""`BatchSpec`: what a data set's batches hold, as a model is built for them.

A model is built from its config and this spec (`core.nn.models.build_model(cfg, spec)`), never
from a bag of loose facts: the shape of one example as the network receives it (after the input
pipeline's resize), the size of the output (classes, a target vocabulary, regression outputs),
the source vocabulary of a translation's inputs, the batch whose hidden state carries over
from batch to batch (sequential partitioning, D2L 9.3), and how many ids each input of ids
ranges over (a recommender's users and items, D2L 16), and the input tokens' vocabulary (pretrained
word vectors are looked up by word, D2L 15.2).
"""

from __future__ import annotations

from typing import NamedTuple


class BatchSpec(NamedTuple):
    input_shape: tuple[int, ...] | dict[str, tuple[int, ...]]  # one example as the network receives it, or each named input
    output_dim: int  # classes (or tokens of the target vocabulary), or regression outputs
    num_classes: int | None = None  # None for regression
    source_vocab: int | None = None  # a translation's source vocabulary
    carry_batch: int | None = None  # the training batch, when hidden states carry across batches
    id_counts: dict[str, int] | None = None  # ids of each named input of ids (users, items; "x": an unnamed one)
    vocab: tuple[str, ...] | None = None  # the input tokens by id, for a text model's pretrained embeddings
