"""The recommender data sets of a config (D2L 16) as `Dataset`s: ratings, rankings, clicks.

`movielens`: explicit ratings as (user, item) -> rating pairs, or as each item's column of the
rating matrix (AutoRec). `movielens_ranking`: implicit feedback; training examples are a user's
interactions (with the L previous items for Caser) and the training interactions are the
`negatives` mask a sampled negative avoids; each held-out interaction is evaluated against every
item its user has not trained on (`y_val = {"item", "seen"}`). `ctr`: click labels and a row of
feature ids. The readers and generators are `core.data.recsys` and `core.data.ctr`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .ctr import CTR_TEST, CTR_TRAIN, auc, encode, feature_map, read_ctr, write_generated_ctr
from .dataset import Dataset
from .files import find_or_fetch
from .recsys import (
    ML100K,
    Interactions,
    lowrank_ratings,
    rating_matrix,
    read_ml100k,
    seen_matrix,
    sequences,
    split_random,
    split_seq_aware,
)

_GENERATED_TEST_SEED = 1  # the generated CTR test file's lines are drawn apart from the training file's


def interactions(cfg, seed: int) -> tuple[Interactions, dict[str, Any]]:
    """The interactions a MovieLens section names, and facts about them (a generated set's noise floor)."""
    if cfg.source == "lowrank":
        g = cfg.lowrank
        inter, facts = lowrank_ratings(g.num_users, g.num_items, g.rank, g.density, g.noise, seed, g.min_per_user, g.exposure)
        return inter, {k: v for k, v in facts.items() if k != "true_rating"} | {"source": "lowrank"}
    path = Path(cfg.file).expanduser() if cfg.file else find_or_fetch(ML100K, cfg.dir)
    return read_ml100k(path), {"source": str(path)}


def split(cfg, inter: Interactions, seed: int) -> tuple[Interactions, Interactions]:
    return split_seq_aware(inter) if cfg.split == "seq_aware" else split_random(inter, cfg.test_ratio, seed)


def movielens(cfg, seed: int) -> Dataset:
    """Explicit ratings (D2L 16.2-16.4)."""
    inter, facts = interactions(cfg, seed)
    train, test = split(cfg, inter, seed)
    meta = facts | {"num_users": inter.num_users, "num_items": inter.num_items, "num_ratings": len(inter.user)}
    if cfg.form == "item_vectors":  # AutoRec: an item's training ratings in, its held-out ratings to score
        r_train, r_test = rating_matrix(train), rating_matrix(test)
        return Dataset(r_train, r_train, r_train, r_test, None, meta=meta)
    pairs = lambda s: {"user": s.user, "item": s.item}  # noqa: E731
    return Dataset(pairs(train), train.rating, pairs(test), test.rating, None, meta=meta,
                   id_counts={"user": inter.num_users, "item": inter.num_items})


def movielens_ranking(cfg, seed: int) -> Dataset:
    """Implicit feedback for ranking (D2L 16.5-16.7)."""
    inter, facts = interactions(cfg, seed)
    train, test = split(cfg, inter, seed)
    seen = seen_matrix(train)
    if cfg.seq_len:
        seqs = sequences(train, cfg.seq_len)
        x_train = {"user": seqs.user, "item": seqs.target, "seq": seqs.seq}
        x_val = {"user": test.user, "seq": seqs.test_seq[test.user]}
    else:
        x_train = {"user": train.user, "item": train.item}
        x_val = {"user": test.user}
    y_val = {"item": test.item, "seen": seen[test.user]}
    meta = facts | {"num_users": inter.num_users, "num_items": inter.num_items, "num_train": len(train.user),
                    "num_test": len(test.user)}
    return Dataset(x_train, np.zeros(len(x_train["user"]), np.float32), x_val, y_val, None, meta=meta,
                   id_counts={"user": inter.num_users, "item": inter.num_items, "seq": inter.num_items}, negatives=seen)


def ctr(cfg, seed: int) -> Dataset:
    """Click-through rates (D2L 16.8): the book's files, or generated ones in their format."""
    if cfg.source == "generated":
        with tempfile.TemporaryDirectory() as tmp:
            truth = write_generated_ctr(Path(tmp) / "train.csv", cfg.num_train, seed)
            test_truth = write_generated_ctr(Path(tmp) / "test.csv", cfg.num_val, seed + _GENERATED_TEST_SEED)
            data = _ctr_files(cfg, Path(tmp) / "train.csv", Path(tmp) / "test.csv")
        y = data.y_val
        best_loss = float(-np.mean(y * np.log(test_truth) + (1 - y) * np.log1p(-test_truth)))
        return data._replace(meta=data.meta | {"source": "generated", "val/loss_best": best_loss,
                                               "val/auc_best": auc(test_truth, y), "train_click_rate": float(np.mean(truth))})
    if cfg.file:
        train_path = Path(cfg.file).expanduser()
        test_path = train_path.with_name("test.csv")
    else:
        train_path, test_path = find_or_fetch(CTR_TRAIN, cfg.dir), find_or_fetch(CTR_TEST, cfg.dir)
    return _ctr_files(cfg, train_path, test_path)


def _ctr_files(cfg, train_path: Path, test_path: Path) -> Dataset:
    y_train, v_train, skipped_train = read_ctr(train_path)
    y_val, v_val, skipped_val = read_ctr(test_path)
    fmap = feature_map(v_train, cfg.min_threshold)  # the test file maps through the training file's values
    meta = {"source": str(train_path), "field_dims": fmap.field_dims.tolist(), "skipped_lines": skipped_train + skipped_val}
    return Dataset(encode(v_train, fmap), y_train, encode(v_val, fmap), y_val, None, meta=meta,
                   id_counts={"x": int(fmap.field_dims.sum())})
