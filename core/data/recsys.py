"""MovieLens 100K and what chapter 16 builds from it (D2L 16.2, 16.4, 16.7).

`read_ml100k` reads `u.data` into `Interactions` (ids from 0); `lowrank_ratings` generates ratings
of the same shape from a known low-rank model, so that the best achievable RMSE is known. The
book's two splits (`split_random`, `split_seq_aware`), the explicit rating matrix that AutoRec
reads (`rating_matrix`), the implicit "which items has a user seen" mask (`seen_matrix`) and
Caser's windows of consecutive items (`sequences`) complete the chapter's data.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError
from .files import RemoteFile

ML100K = RemoteFile("ml-100k/u.data", "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                    "cd4dcac4241c8a4ad7badc7ca635da8a69dddb83", member="ml-100k/u.data")


class MalformedLine(DataError, ValueError):
    """A line of a data file that cannot be read; the message names the file and the line."""


class Interactions(NamedTuple):
    """Ratings as parallel columns, users and items numbered from 0."""

    user: np.ndarray  # int32 (n,)
    item: np.ndarray  # int32 (n,)
    rating: np.ndarray  # float32 (n,)
    time: np.ndarray  # int64 (n,)
    num_users: int
    num_items: int


def read_ml100k(path: str | Path) -> Interactions:
    """The book's `read_data_ml100k` (D2L 16.2): `u.data`, tab-separated `user item rating time`.

    Ids in the file start at 1 and become 0-based; the number of users (items) is the largest id,
    which for ml-100k equals the book's count of distinct ids (943 users, 1682 items). Blank lines
    are skipped, as pandas does; a rating may be any finite number.

    Raises:
        MalformedLine (a ValueError): a line without four fields, an id or time that is not an
            integer, an id below 1, a rating that is not a finite number; or an empty file.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not a text file; expected tab-separated 'user item rating timestamp' lines") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            rows.append(_parse_rating(line, path, number))
    if not rows:
        raise MalformedLine(f"{path}: holds no ratings")
    user, item, rating, time = zip(*rows)
    user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
    return Interactions(user=(user - 1).astype(np.int32), item=(item - 1).astype(np.int32),
                        rating=np.asarray(rating, np.float32), time=np.asarray(time, np.int64),
                        num_users=int(user.max()), num_items=int(item.max()))


def _parse_rating(line: str, path, number: int) -> tuple[int, int, float, int]:
    fields = line.rstrip("\r").split("\t")
    where = f"{path}, line {number}"
    if len(fields) != 4:
        raise MalformedLine(f"{where}: expected 4 tab-separated fields (user item rating timestamp), "
                            f"got {len(fields)}: {line[:80]!r}")
    try:
        user, item, time = int(fields[0]), int(fields[1]), int(fields[3])
        rating = float(fields[2])
    except ValueError:
        raise MalformedLine(f"{where}: user, item and timestamp must be integers and the rating a number: "
                            f"{line[:80]!r}") from None
    if user < 1 or item < 1:
        raise MalformedLine(f"{where}: ids start at 1, got user {user}, item {item}")
    if not np.isfinite(rating):
        raise MalformedLine(f"{where}: the rating is not finite: {line[:80]!r}")
    return user, item, rating, time


def lowrank_ratings(num_users: int, num_items: int, rank: int, density: float, noise: float, seed: int,
                    min_per_user: int = 10, exposure: float = 0.0) -> tuple[Interactions, dict]:
    """Ratings from a known biased matrix factorization, a stand-in for MovieLens (D2L 16.3).

    True rating `r_ui = 3.5 + b_u + b_i + p_u . q_i` with `b_u, b_i ~ N(0, 0.3^2)` and the entries of
    `p_u, q_i` drawn from `N(0, s^2)`, `s^2 = sqrt(0.82 / rank)`, so that `p_u . q_i` has variance
    0.82 and the true ratings a standard deviation near 1 (MovieLens': about 1.1). Each pair is
    observed with probability `density` (with `exposure` beta > 0, with a probability proportional
    to exp(beta z_ui), z the standardised true rating, and `density` on average: users see the
    items they like, so that which items a user has rated carries a signal a ranking can learn,
    as on MovieLens), and a user with fewer than `min_per_user` ratings gets
    random further items; an observed rating is the true one plus `N(0, noise^2)`, not rounded.
    Timestamps are distinct and in a random order within each user. Rows are ordered by user,
    then item. The same seed gives the same ratings.

    Returns:
        The interactions and `{"noise_floor": noise` (the expected RMSE of the true ratings
        against the observed ones: no model does better in expectation), `"num_ratings"`,
        `"rank"`, `"rating_std"` (of the observed ratings), `"true_rating"` (float32 (n,))`}`.
    """
    if not 1 <= min_per_user <= num_items:
        raise ValueError(f"min_per_user must lie in 1..num_items ({num_items}), got {min_per_user}")
    rng = np.random.default_rng(seed)
    scale = (0.82 / rank) ** 0.25
    p = rng.normal(0.0, scale, (num_users, rank))
    q = rng.normal(0.0, scale, (num_items, rank))
    b_user, b_item = rng.normal(0.0, 0.3, num_users), rng.normal(0.0, 0.3, num_items)
    chance = density
    if exposure:
        affinity = b_user[:, None] + b_item[None, :] + p @ q.T
        weight = np.exp(exposure * (affinity - affinity.mean()) / affinity.std())
        chance = np.minimum(1.0, density * weight / weight.mean())
    observed = rng.uniform(size=(num_users, num_items)) < chance
    for u in np.flatnonzero(observed.sum(axis=1) < min_per_user):
        unseen = np.flatnonzero(~observed[u])
        observed[u, rng.choice(unseen, min_per_user - observed[u].sum(), replace=False)] = True
    user, item = np.nonzero(observed)
    true = 3.5 + b_user[user] + b_item[item] + np.einsum("nk,nk->n", p[user], q[item])
    rating = true + rng.normal(0.0, noise, len(user))
    time = 874_724_710 + rng.permutation(len(user)).astype(np.int64)  # ml-100k's first timestamp
    inter = Interactions(user=user.astype(np.int32), item=item.astype(np.int32), rating=rating.astype(np.float32),
                         time=time, num_users=num_users, num_items=num_items)
    info = {"noise_floor": float(noise), "num_ratings": len(user), "rank": rank,
            "rating_std": float(inter.rating.std()), "true_rating": true.astype(np.float32)}
    return inter, info


def _take(inter: Interactions, index: np.ndarray) -> Interactions:
    """The rows `index` (a boolean mask or positions) of `inter`, same counts of users and items."""
    return inter._replace(user=inter.user[index], item=inter.item[index], rating=inter.rating[index],
                          time=inter.time[index])


def split_random(inter: Interactions, test_ratio: float, seed: int) -> tuple[Interactions, Interactions]:
    """The book's `split_data_ml100k` in 'random' mode (D2L 16.2): an interaction is in the
    training set when its `uniform(0, 1)` draw (from `default_rng(seed)`) is below
    `1 - test_ratio`, otherwise in the test set; both keep the file's order."""
    mask = np.random.default_rng(seed).uniform(0, 1, len(inter.user)) < 1 - test_ratio
    return _take(inter, mask), _take(inter, ~mask)


def split_seq_aware(inter: Interactions) -> tuple[Interactions, Interactions]:
    """The book's `split_data_ml100k` in 'seq-aware' mode (D2L 16.2): each user's latest
    interaction is held out.

    The test set has one interaction per user, users ascending (the book lists them in the order
    users first appear; the rows are the same): the one with the largest time, the first in file
    order among equal times (the book's strict `<`). The training set is every user's other
    interactions, users ascending and, within a user, by time (stable). As in the book, it drops
    every row equal to the user's test row in (item, rating, time), so an exact duplicate of the
    test row leaves with it. A user without interactions is absent from both.
    """
    n = len(inter.user)
    order = np.arange(n)
    latest = np.lexsort((order, -inter.time, inter.user))
    first = np.ones(n, bool)
    first[1:] = inter.user[latest[1:]] != inter.user[latest[:-1]]
    test_index = latest[first]
    by_time = np.lexsort((order, inter.time, inter.user))
    test_of = np.full(inter.num_users, -1)
    test_of[inter.user[test_index]] = test_index
    t = test_of[inter.user[by_time]]
    is_test = ((inter.item[by_time] == inter.item[t]) & (inter.rating[by_time] == inter.rating[t])
               & (inter.time[by_time] == inter.time[t]))
    return _take(inter, by_time[~is_test]), _take(inter, test_index)


def rating_matrix(inter: Interactions) -> np.ndarray:
    """float32 (num_items, num_users): the rating where known, else 0 (the book's explicit
    `inter` of `load_data_ml100k`, item-major: the rows AutoRec reconstructs, D2L 16.4). Of
    repeated pairs the last in order counts, as in the book's loop."""
    matrix = np.zeros((inter.num_items, inter.num_users), np.float32)
    matrix[inter.item, inter.user] = inter.rating
    return matrix


def seen_matrix(inter: Interactions) -> np.ndarray:
    """bool (num_users, num_items): True where the user interacted with the item (the book's
    implicit `candidates` of `load_data_ml100k`, as a dense mask; D2L 16.5-16.7 sample negatives
    outside it)."""
    seen = np.zeros((inter.num_users, inter.num_items), bool)
    seen[inter.user, inter.item] = True
    return seen


class Sequences(NamedTuple):
    """Caser's training windows (D2L 16.7)."""

    user: np.ndarray  # int32 (ns,)
    seq: np.ndarray  # int32 (ns, L): the L items before the target, oldest first
    target: np.ndarray  # int32 (ns,)
    test_seq: np.ndarray  # int32 (num_users, L): each user's last L training items


def sequences(train: Interactions, L: int) -> Sequences:
    """The book's `SeqDataset` (D2L 16.7): windows of `L + 1` consecutive items of a user.

    Each user's items are put in time order (a stable sort by user, then time). From the end
    backwards with step 1 (the book's `_win`), each window of `L + 1` items gives `seq =
    window[:L]` and `target = window[L]`; rows run over users ascending and, within a user,
    latest window first, as the book's. `test_seq[u]` is the user's last `L` items, the input
    that predicts its held-out item. A user with fewer than `L + 1` items has no training windows
    (the book fails there) and, with fewer than `L`, a `test_seq` left-padded with its first item.

    Raises:
        ValueError: a user with no training items, who has no `test_seq`.
    """
    order = np.lexsort((np.arange(len(train.user)), train.time, train.user))
    items, users = train.item[order], train.user[order]
    count = np.bincount(users, minlength=train.num_users)
    if (count == 0).any():
        raise ValueError(f"user {int(np.argmin(count))} (0-based) has no training items, so no sequence "
                         f"predicts its test item")
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    windows = np.maximum(count - L, 0)
    row_user = np.repeat(np.arange(train.num_users), windows)
    # the k-th window of a user (k = 0 the latest) ends just before start + count - k
    k = np.arange(len(row_user)) - np.repeat(np.cumsum(windows) - windows, windows)
    end = start[row_user] + count[row_user] - k
    window = items[end[:, None] - (L + 1) + np.arange(L + 1)] if len(end) else np.zeros((0, L + 1), np.int32)
    last = start[:, None] + np.maximum(0, count[:, None] - L + np.arange(L))
    return Sequences(user=row_user.astype(np.int32), seq=window[:, :L].astype(np.int32),
                     target=window[:, L].astype(np.int32), test_seq=items[last].astype(np.int32))
