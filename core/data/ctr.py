"""The click-through-rate data of D2L 16.8, and a generated file in the same format.

Each line of `ctr/train.csv` and `ctr/test.csv` is `label<TAB>f1<TAB>...<TAB>f34`: a click
(1) or not (0), then 34 categorical values. `read_ctr` reads them, `feature_map` numbers each
field's frequent values (rare ones share the field's last index), and `encode` turns values into
one global embedding index per field, as the book's `CTRDataset` does. `write_generated_ctr`
writes lines drawn from a known factorization machine, so that the best achievable log-loss
and AUC are known; `auc` is the exact ROC AUC the reports use.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import disk
from ..errors import DataError
from .files import RemoteFile
from .recsys import MalformedLine
from .text import D2L_DATA_URL

CTR_TRAIN = RemoteFile("ctr/train.csv", D2L_DATA_URL + "ctr.zip", "e18327c48c8e8e5c23da714dd614e390d369843f",
                       member="ctr/train.csv")
CTR_TEST = RemoteFile("ctr/test.csv", D2L_DATA_URL + "ctr.zip", "e18327c48c8e8e5c23da714dd614e390d369843f",
                      member="ctr/test.csv")
NUM_FIELDS = 34
_MODEL_SEED = 168  # the generated machine's weights: one model, whatever seed draws the lines


def read_ctr(path: str | Path, num_fields: int = NUM_FIELDS) -> tuple[np.ndarray, np.ndarray, int]:
    """The book's `CTRDataset` reading (D2L 16.8).

    Returns:
        `(labels, values, skipped)`: labels float32 (n,); values str (n, num_fields), each line's
        categorical values; and the count of lines with another number of fields, which the book
        skips silently (so do we, counting them).

    Raises:
        MalformedLine (a ValueError): a label that is not 0 or 1.
    """
    labels, values, skipped = [], [], 0
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                fields = line.rstrip("\n").split("\t")
                if len(fields) != num_fields + 1:
                    skipped += 1
                    continue
                labels.append(_label(fields[0], path, number))
                values.append(fields[1:])
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not a text file; expected 'label<TAB>value...' lines") from None
    table = np.array(values, dtype=str) if values else np.zeros((0, num_fields), dtype=str)
    return np.asarray(labels, np.float32), table, skipped


def _label(text: str, path, number: int) -> float:
    try:
        label = int(text)
    except ValueError:
        label = -1
    if label not in (0, 1):
        raise MalformedLine(f"{path}, line {number}: the label must be 0 or 1, got {text[:20]!r}")
    return float(label)


class FeatureMap(NamedTuple):
    """Per field, the index of each frequent value; and where each field's indices begin."""

    values: tuple[dict[str, int], ...]  # per field: value -> index within the field
    field_dims: np.ndarray  # int64 (num_fields,): len(values[f]) + 1, the last index for rare or unseen values
    offsets: np.ndarray  # int64 (num_fields,): cumulative field_dims, starting at 0


def feature_map(values: np.ndarray, min_threshold: int = 4) -> FeatureMap:
    """The book's `feat_mapper` and `defaults` (D2L 16.8): per field, the values seen at least
    `min_threshold` times get indices 0, 1, ...; every other value shares the next one.

    The book numbers the frequent values in the order a Python set yields them, which changes
    between processes (string hashing is salted); we number them in sorted order, so that a run
    is reproducible.

    Args:
        values: str (n, num_fields), as `read_ctr` returns them (the training file's).
    """
    maps = []
    for column in np.asarray(values).T:
        uniques, counts = np.unique(column, return_counts=True)
        maps.append({str(v): i for i, v in enumerate(uniques[counts >= min_threshold])})
    dims = np.array([len(m) + 1 for m in maps], np.int64)
    offsets = np.concatenate([[0], np.cumsum(dims)[:-1]]).astype(np.int64)
    return FeatureMap(values=tuple(maps), field_dims=dims, offsets=offsets)


def encode(values: np.ndarray, fmap: FeatureMap) -> np.ndarray:
    """int32 (n, num_fields): each value's index in its field (the field's default,
    `len(fmap.values[f])`, when rare or unseen) plus the field's offset, one global embedding
    index per field (the book's `CTRDataset.__getitem__`, D2L 16.8)."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(fmap.values):
        raise ValueError(f"expected values of shape (n, {len(fmap.values)}), got {values.shape}")
    out = np.empty(values.shape, np.int32)
    for f, mapping in enumerate(fmap.values):
        uniques, inverse = np.unique(values[:, f], return_inverse=True)
        index = np.array([mapping.get(str(v), len(mapping)) for v in uniques], np.int64)
        out[:, f] = index[inverse.reshape(-1)] + fmap.offsets[f]
    return out


def write_generated_ctr(path: str | Path, num_lines: int, seed: int, num_fields: int = NUM_FIELDS,
                        cardinality: int = 20, factors: int = 4) -> np.ndarray:
    """Write `num_lines` lines in the format of d2l's `ctr.zip`, drawn from a known factorization
    machine (D2L 16.9), atomically.

    Field f's value is one of `cardinality` strings like `f3_0a1b`, drawn with probability
    proportional to `1 / (k + 1)^2` for the k-th (so the last ones are rare and fall under `feature_map`'s
    threshold in a small file). A click has probability `sigmoid(w0 + sum_f w[value_f] +
    sum_{f<g} <v[value_f], v[value_g]>)` with `factors`-dimensional `v`. The weights are scaled
    so that the logits spread with standard deviation 1.5 (a Bayes-optimal AUC near 0.8) and
    `w0` is set so that the click rate is 0.2 (the real set's: about 0.18-0.2), both on a fixed
    sample of the machine's inputs. The machine depends only on `num_fields`, `cardinality`
    and `factors`, not on `seed`: files written with different seeds (a training file and a test
    file) come from the same machine. The same seed writes the same file.

    Returns:
        float64 (num_lines,): each line's true click probability.
    """
    model = _fm(num_fields, cardinality, factors)
    rng = np.random.default_rng(seed)
    drawn = _draw_values(rng, num_lines, num_fields, cardinality)
    prob = _sigmoid(_fm_logit(model, drawn))
    labels = (rng.uniform(size=num_lines) < prob).astype(int)
    names = model["names"][np.arange(num_fields), drawn] if num_lines else np.zeros((0, num_fields), str)
    text = "".join(f"{y}\t" + "\t".join(row) + "\n" for y, row in zip(labels, names.tolist()))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    disk.write_atomic(path, text)
    return prob


def _draw_values(rng: np.random.Generator, n: int, num_fields: int, cardinality: int) -> np.ndarray:
    """int (n, num_fields): each field's value index, Zipf-like (value k with weight 1/(k+1)^2)."""
    weights = 1.0 / np.arange(1, cardinality + 1) ** 2.0
    return rng.choice(cardinality, size=(n, num_fields), p=weights / weights.sum())


def _fm(num_fields: int, cardinality: int, factors: int, target_std: float = 1.5, click_rate: float = 0.2) -> dict:
    """The generating machine: value names, weights scaled to spread the logits by `target_std`,
    and a bias that makes the mean click probability `click_rate`, on 20,000 sample inputs."""
    rng = np.random.default_rng([_MODEL_SEED, num_fields, cardinality, factors])
    codes = np.stack([rng.choice(1 << 16, cardinality, replace=False) for _ in range(num_fields)])
    names = np.array([[f"f{f + 1}_{c:04x}" for c in row] for f, row in enumerate(codes)])
    model = {"names": names, "w0": 0.0, "w": rng.normal(0.0, 1.0, (num_fields, cardinality)),
             "v": rng.normal(0.0, 1.0, (num_fields, cardinality, factors))}
    sample = _draw_values(rng, 20_000, num_fields, cardinality)
    linear, pairwise = _fm_terms(model, sample)
    # scaling w by c and v by sqrt(c) scales the logit by c: still a factorization machine
    c = target_std / max(float((linear + pairwise).std()), 1e-12)
    model["w"], model["v"] = model["w"] * c, model["v"] * np.sqrt(c)
    logit = c * (linear + pairwise)
    low, high = -30.0, 30.0
    for _ in range(100):  # bisection: the mean probability increases with w0
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(mid + logit).mean() < click_rate else (low, mid)
    model["w0"] = (low + high) / 2
    return model


def _fm_terms(model: dict, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The linear and pairwise parts of the logit, (n,) each; the pairwise one by the FM identity
    `sum_{f<g} <v_f, v_g> = (|sum_f v_f|^2 - sum_f |v_f|^2) / 2`."""
    fields = np.arange(drawn.shape[1])
    linear = model["w"][fields, drawn].sum(axis=1)
    v = model["v"][fields, drawn]  # (n, num_fields, factors)
    pairwise = 0.5 * ((v.sum(axis=1) ** 2).sum(axis=1) - (v**2).sum(axis=(1, 2)))
    return linear, pairwise


def _fm_logit(model: dict, drawn: np.ndarray) -> np.ndarray:
    linear, pairwise = _fm_terms(model, drawn)
    return model["w0"] + linear + pairwise


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def auc(scores, labels) -> float:
    """The exact ROC AUC: the chance that a random positive scores above a random negative, ties
    counting one half, from the positives' ranks (Mann-Whitney U). NaN when a class is absent."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    positive = np.asarray(labels).reshape(-1) > 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1]]))
    ends = np.concatenate([starts[1:], [len(scores)]])
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean 1-based rank of each tie group
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
