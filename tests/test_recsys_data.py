"""Chapter 16's data (D2L 16.2, 16.7, 16.8): MovieLens reading and splits against literal ports of
the book's code, Caser's windows, the generated ratings and clicks, and the CTR feature mapping."""

import itertools

import numpy as np
import pandas as pd
import pytest

from dlrun.core.data.ctr import auc, encode, feature_map, read_ctr, write_generated_ctr
from dlrun.core.data.recsys import (
    Interactions,
    lowrank_ratings,
    rating_matrix,
    read_ml100k,
    seen_matrix,
    sequences,
    split_random,
    split_seq_aware,
)


def write_udata(path, rows):
    path.write_text("".join("\t".join(str(x) for x in row) + "\n" for row in rows))
    return path


def random_udata(path, num_users=8, num_items=30, seed=0, per_user=(5, 15), times=6):
    """A small u.data in file order shuffled across users, with many repeated timestamps."""
    rng = np.random.default_rng(seed)
    rows = [(u, int(rng.integers(1, num_items + 1)), int(rng.integers(1, 6)), int(rng.integers(0, times)))
            for u in range(1, num_users + 1) for _ in range(int(rng.integers(*per_user)))]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    rows += [rows[0], rows[3]]  # exact duplicates, which the book's tuple comparison treats alike
    return write_udata(path, rows)


# --- literal ports of the book's code (D2L 16.2 movielens.md, 16.7 seqrec.md) ---

def book_read(path):
    names = ["user_id", "item_id", "rating", "timestamp"]
    data = pd.read_csv(path, sep="\t", names=names, engine="python")
    return data, data.user_id.unique().shape[0], data.item_id.unique().shape[0]


def book_split_seq_aware(data, num_users):
    train_items, test_items, train_list = {}, {}, []
    for line in data.itertuples():
        u, i, rating, time = line[1], line[2], line[3], line[4]
        train_items.setdefault(u, []).append((u, i, rating, time))
        if u not in test_items or test_items[u][-1] < time:
            test_items[u] = (i, rating, time)
    for u in range(1, num_users + 1):
        train_list.extend(sorted(train_items[u], key=lambda k: k[3]))
    test_data = [(key, *value) for key, value in test_items.items()]
    train_data = [item for item in train_list if item not in test_data]
    return train_data, test_data


def book_win(tensor, window_size, step_size=1):
    if len(tensor) - window_size >= 0:
        for i in range(len(tensor), 0, -step_size):
            if i - window_size >= 0:
                yield tensor[i - window_size:i]
            else:
                break
    else:
        yield tensor


def book_seq(u_ids, i_ids, idx, max_len):
    for i in range(len(idx)):
        stop_idx = None if i >= len(idx) - 1 else int(idx[i + 1])
        for s in book_win(i_ids[int(idx[i]):stop_idx], max_len):
            yield (int(u_ids[i]), s)


def book_seq_dataset(user_ids, item_ids, L, num_users):
    user_ids, item_ids = np.array(user_ids), np.array(item_ids)
    sort_idx = np.array(sorted(range(len(user_ids)), key=lambda k: user_ids[k]))
    u_ids, i_ids = user_ids[sort_idx], item_ids[sort_idx]
    temp = {}
    [temp.setdefault(u_ids[i], []).append(i) for i, _ in enumerate(u_ids)]
    temp = sorted(temp.items(), key=lambda x: x[0])
    u_ids = np.array([i[0] for i in temp])
    idx = np.array([i[1][0] for i in temp])
    ns = int(sum([c - L if c >= L + 1 else 1 for c in np.array([len(i[1]) for i in temp])]))
    seq_items, seq_users, seq_tgt = np.zeros((ns, L)), np.zeros(ns, dtype="int32"), np.zeros((ns, 1))
    test_seq, _uid = np.zeros((num_users, L)), None
    for i, (uid, i_seq) in enumerate(book_seq(u_ids, i_ids, idx, L + 1)):
        if uid != _uid:
            test_seq[uid][:] = i_seq[-L:]
            _uid = uid
        seq_tgt[i][:] = i_seq[-1:]
        seq_items[i][:], seq_users[i] = i_seq[:L], uid
    return seq_users, seq_items, seq_tgt[:, 0], test_seq


def as_rows(inter):
    """Interactions as the book's 1-based (user, item, rating, time) tuples."""
    return [(int(u) + 1, int(i) + 1, int(r), int(t)) for u, i, r, t in zip(inter.user, inter.item, inter.rating, inter.time)]


# --- MovieLens ---

def test_read_ml100k_makes_ids_0_based_and_counts_by_largest_id(tmp_path):
    path = write_udata(tmp_path / "u.data", [(196, 242, 3, 881250949), (1, 302, 5, 891717742), (22, 377, 1, 878887116)])
    inter = read_ml100k(path)
    assert inter.user.dtype == np.int32 and inter.item.dtype == np.int32
    assert inter.rating.dtype == np.float32 and inter.time.dtype == np.int64
    np.testing.assert_array_equal(inter.user, [195, 0, 21])
    np.testing.assert_array_equal(inter.item, [241, 301, 376])
    np.testing.assert_array_equal(inter.rating, [3, 5, 1])
    np.testing.assert_array_equal(inter.time, [881250949, 891717742, 878887116])
    assert (inter.num_users, inter.num_items) == (196, 377)


@pytest.mark.parametrize("bad", ["1\t2\t3", "1\tx\t3\t4", "0\t2\t3\t4", "1\t2\tnan\t4"])
def test_read_ml100k_names_file_and_line_of_a_malformed_line(tmp_path, bad):
    path = tmp_path / "u.data"
    path.write_text(f"1\t1\t5\t10\n2\t3\t4\t11\n{bad}\n")
    with pytest.raises(ValueError, match="u.data, line 3"):
        read_ml100k(path)


def test_split_seq_aware_matches_the_books_code(tmp_path):
    for seed in range(5):
        path = random_udata(tmp_path / f"u{seed}.data", seed=seed)
        data, num_users, _ = book_read(path)
        book_train, book_test = book_split_seq_aware(data, num_users)
        train, test = split_seq_aware(read_ml100k(path))
        assert as_rows(train) == book_train
        assert as_rows(test) == sorted(book_test)
        assert list(test.user) == list(range(num_users))


def test_split_random_is_the_books_mask_rule():
    inter, _ = lowrank_ratings(300, 400, rank=5, density=0.1, noise=0.5, seed=1)
    train, test = split_random(inter, test_ratio=0.1, seed=7)
    mask = np.random.default_rng(7).uniform(0, 1, len(inter.user)) < 0.9
    for got, want in ((train, mask), (test, ~mask)):
        np.testing.assert_array_equal(got.user, inter.user[want])
        np.testing.assert_array_equal(got.item, inter.item[want])
        np.testing.assert_array_equal(got.rating, inter.rating[want])
        np.testing.assert_array_equal(got.time, inter.time[want])
    assert abs(len(test.user) / len(inter.user) - 0.1) < 0.01


def test_rating_and_seen_matrices(tmp_path):
    inter = read_ml100k(write_udata(tmp_path / "u.data", [(1, 3, 4, 0), (2, 1, 5, 1), (2, 3, 2, 2)]))
    ratings = rating_matrix(inter)
    assert ratings.shape == (3, 2) and ratings.dtype == np.float32
    np.testing.assert_array_equal(ratings, [[0, 5], [0, 0], [4, 2]])
    seen = seen_matrix(inter)
    assert seen.dtype == bool
    np.testing.assert_array_equal(seen, [[False, False, True], [True, False, True]])


def test_sequences_match_the_books_seq_dataset(tmp_path):
    rng = np.random.default_rng(3)
    rows = [(u, int(i), 1, int(t)) for u, n in ((1, 8), (2, 10), (3, 9))
            for i, t in zip(rng.integers(1, 20, n), rng.permutation(100)[:n])]
    train, _ = split_seq_aware(read_ml100k(write_udata(tmp_path / "u.data", rows)))
    L = 3
    got = sequences(train, L)
    users, items, targets, test_seq = book_seq_dataset(train.user, train.item, L, train.num_users)
    assert len(got.user) == len(users) == (7 - L) + (9 - L) + (8 - L)
    np.testing.assert_array_equal(got.user, users)
    np.testing.assert_array_equal(got.seq, items)
    np.testing.assert_array_equal(got.target, targets)
    np.testing.assert_array_equal(got.test_seq, test_seq)
    assert got.seq.dtype == got.target.dtype == got.test_seq.dtype == got.user.dtype == np.int32


def test_sequences_of_short_and_empty_users():
    inter = Interactions(user=np.array([0, 0, 1], np.int32), item=np.array([5, 6, 7], np.int32),
                         rating=np.ones(3, np.float32), time=np.array([2, 1, 0]), num_users=2, num_items=8)
    got = sequences(inter, 3)
    assert got.seq.shape == (0, 3) and got.target.shape == (0,) and got.user.shape == (0,)
    np.testing.assert_array_equal(got.test_seq, [[6, 6, 5], [7, 7, 7]])
    with pytest.raises(ValueError, match="user 2"):
        sequences(inter._replace(num_users=3), 3)


def test_lowrank_ratings_are_deterministic_and_their_noise_is_the_floor():
    a, info = lowrank_ratings(400, 600, rank=8, density=0.1, noise=0.8, seed=0)
    b, _ = lowrank_ratings(400, 600, rank=8, density=0.1, noise=0.8, seed=0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.rating, lowrank_ratings(400, 600, rank=8, density=0.1, noise=0.8, seed=1)[0].rating)
    rmse = np.sqrt(np.mean((info["true_rating"] - a.rating) ** 2))
    assert abs(rmse - info["noise_floor"]) < 0.05 * 0.8
    assert info["num_ratings"] == len(a.user) and info["rank"] == 8
    assert 0.85 < np.std(info["true_rating"]) < 1.2
    assert info["rating_std"] == pytest.approx(np.std(a.rating), rel=1e-5)
    assert len(np.unique(a.time)) == len(a.time)
    assert a.user.dtype == a.item.dtype == np.int32 and a.rating.dtype == np.float32 and a.time.dtype == np.int64


def test_lowrank_ratings_give_every_user_min_per_user():
    inter, _ = lowrank_ratings(200, 300, rank=4, density=0.005, noise=0.5, seed=2, min_per_user=10)
    counts = np.bincount(inter.user, minlength=200)
    assert counts.min() >= 10
    assert len(set(zip(inter.user.tolist(), inter.item.tolist()))) == len(inter.user)  # no pair twice


# --- click-through rate ---

def test_read_ctr_feature_map_and_encode_by_hand(tmp_path):
    f1 = ["a"] * 4 + ["b"] * 4 + ["c"]
    f3 = ["z"] * 5 + ["y"] * 4
    lines = [f"{i % 2}\t{a}\tx\t{c}" for i, (a, c) in enumerate(zip(f1, f3))]
    lines.insert(2, "1\ta\tx")  # too few fields
    lines.insert(5, "0\ta\tx\tz\tw")  # too many
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    labels, values, skipped = read_ctr(path, num_fields=3)
    assert skipped == 2 and values.shape == (9, 3)
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, [0, 1, 0, 1, 0, 1, 0, 1, 0])
    fmap = feature_map(values, min_threshold=4)
    assert fmap.values == ({"a": 0, "b": 1}, {"x": 0}, {"y": 0, "z": 1})
    np.testing.assert_array_equal(fmap.field_dims, [3, 2, 3])
    np.testing.assert_array_equal(fmap.offsets, [0, 3, 5])
    assert fmap.field_dims.dtype == fmap.offsets.dtype == np.int64
    x = encode(np.array([["a", "x", "z"], ["c", "x", "y"], ["b", "q", "unseen"]]), fmap)
    assert x.dtype == np.int32
    np.testing.assert_array_equal(x, [[0, 3, 6], [2, 3, 5], [1, 4, 7]])


def test_read_ctr_rejects_a_label_that_is_not_0_or_1(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("0\ta\tb\n2\ta\tb\n")
    with pytest.raises(ValueError, match="train.csv, line 2"):
        read_ctr(path, num_fields=2)


def test_generated_ctr_is_deterministic_readable_and_near_its_click_rate(tmp_path):
    p = write_generated_ctr(tmp_path / "ctr" / "train.csv", 4000, seed=0)
    q = write_generated_ctr(tmp_path / "again.csv", 4000, seed=0)
    assert (tmp_path / "ctr" / "train.csv").read_bytes() == (tmp_path / "again.csv").read_bytes()
    np.testing.assert_array_equal(p, q)
    assert p.dtype == np.float64 and p.shape == (4000,)
    labels, values, skipped = read_ctr(tmp_path / "ctr" / "train.csv")
    assert skipped == 0 and values.shape == (4000, 34)
    assert abs(labels.mean() - 0.2) < 0.03 and abs(p.mean() - 0.2) < 0.02
    assert 0.75 < auc(p, labels) < 0.88
    # another seed: other lines from the same machine, so a test file shares the training values
    write_generated_ctr(tmp_path / "test.csv", 500, seed=1)
    _, test_values, _ = read_ctr(tmp_path / "test.csv")
    assert all(len(set(values[:, f]) | set(test_values[:, f])) <= 20 for f in range(34))
    fmap = feature_map(values)
    assert (encode(test_values, fmap) == fmap.offsets + fmap.field_dims - 1).mean() < 0.01
    # a small file has rare values, which feature_map sends to the field's default
    _, small, _ = read_ctr(tmp_path / "test.csv")
    assert (feature_map(small).field_dims < 21).any()


def test_auc_matches_a_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    pairs = [(s, t) for s, t in itertools.product(scores[labels == 1], scores[labels == 0])]
    brute = sum(1.0 if s > t else 0.5 if s == t else 0.0 for s, t in pairs) / len(pairs)
    assert auc(scores, labels) == pytest.approx(brute, abs=1e-12)
    assert auc([0.1, 0.9], [0, 1]) == 1.0 and auc([0.9, 0.1], [0, 1]) == 0.0
    assert np.isnan(auc([0.3, 0.4], [1, 1]))
