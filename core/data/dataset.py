"""`Dataset`: a data set as host arrays, the form every loader returns.

The trainer moves it to the device once and batches it there. Images are NHWC float32 in
[0, 1]; regression targets have shape (n, 1); class labels are int32. A model of several inputs
takes them named, `x` a dict of arrays with one row per example each (a translation's source,
its valid length and the decoder's input).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .sampling import Sampling
from .spec import BatchSpec


def num_examples(x) -> int:
    """The examples in an array, or in a dict of named arrays (the same number in each)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


class Dataset(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int | None  # None for regression
    label_names: tuple[str, ...] | None = None
    meta: dict[str, Any] = {}  # facts about how the data was made (true weights, sources)
    w_train: np.ndarray | None = None  # per-example weights of the training loss (D2L 4.9.5), None: all 1
    sampling: Sampling = Sampling()  # how an epoch walks through the training examples (`core.data.sampling`)
    source_vocab: int | None = None  # a translation's source vocabulary size (its inputs are token ids)
    id_counts: dict[str, int] | None = None  # how many ids each named input of ids has (users, items; "x": one array)
    negatives: np.ndarray | None = None  # (users, items) bool: what a sampled negative item avoids (D2L 16.5)

    @property
    def input_shape(self) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
        """One example's shape, or for named inputs (a translation's) each input's."""
        if isinstance(self.x_train, dict):
            return {k: tuple(v.shape[1:]) for k, v in self.x_train.items()}
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return num_examples(self.x_train)

    @property
    def output_dim(self) -> int:
        return self.num_classes if self.num_classes is not None else int(np.prod(self.y_train.shape[1:]))

    def spec(self, input_shape: tuple[int, ...] | None = None, carry_batch: int | None = None) -> BatchSpec:
        """The batches' spec, with `input_shape` as the network receives an example (default:
        as stored)."""
        shape = input_shape if input_shape is not None else self.input_shape
        shape = dict(shape) if isinstance(shape, dict) else tuple(shape)
        vocab = tuple(self.meta["vocab"]) if "vocab" in self.meta else None
        return BatchSpec(shape, self.output_dim, self.num_classes, self.source_vocab, carry_batch, self.id_counts, vocab)
