"""Copying dlrun's params into a PyTorch port of the book's code, for the tests that compare the
two with the same weights: a dense `w` (in, out) is `Linear.weight` transposed."""

from __future__ import annotations

import numpy as np


def copy_linear(torch, layer, p, w: str = "w", b: str = "b") -> None:
    layer.weight.copy_(torch.tensor(np.asarray(p[w]).T))
    layer.bias.copy_(torch.tensor(np.asarray(p[b])))


def copy_norm(torch, layer, p) -> None:
    layer.weight.copy_(torch.tensor(np.asarray(p["gamma"])))
    layer.bias.copy_(torch.tensor(np.asarray(p["beta"])))
