"""Inputs that used to end in a traceback, a hang or a silent surprise: duplicate keys, alias
bombs, files that never end, booleans where numbers belong, checkpoints past epoch 9999."""

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlrun.core.config import ConfigError, load_config
from dlrun.core.config.loading import MAX_CONFIG_BYTES, read_yaml_mapping
from dlrun.core.training.checkpoint import list_checkpoints


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_duplicate_key_is_refused_naming_it_and_both_lines(tmp_path):
    path = write(tmp_path, "name: a\noptimizer:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"c.yaml: the key 'lr' appears twice in one mapping, at lines 3 and 5"):
        load_config(path)


def test_a_merge_key_may_be_overridden(tmp_path):
    path = write(tmp_path, "defaults: &d {lr: 0.1, momentum: 0.5}\nopt:\n  <<: *d\n  lr: 0.2\n")
    assert read_yaml_mapping(path)["opt"] == {"lr": 0.2, "momentum": 0.5}


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=8, unique=True),
       which=st.integers(min_value=0), where=st.integers(min_value=0))
def test_any_duplicated_key_is_found(tmp_path_factory, keys, which, where):
    dup = keys[which % len(keys)]
    lines = [f"{k}: {i}" for i, k in enumerate(keys)]
    lines.insert(where % (len(lines) + 1), f"{dup}: again")
    path = write(tmp_path_factory.mktemp("dup"), "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"the key '{dup}' appears twice"):
        read_yaml_mapping(path)


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = write(tmp_path, "\n".join(rows) + "\n")  # 10^9 values once expanded
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        load_config(path)
    assert time.perf_counter() - t0 < 10  # refused by counting, not by expanding (a generous bound)


def test_files_that_never_end_or_are_too_big_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config("/dev/zero")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(fifo)  # opening it would wait for a writer forever
    big = write(tmp_path, "name: a\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1), "big.yaml")
    with pytest.raises(ConfigError, match="is larger than 1024 KiB"):
        load_config(big)


@pytest.mark.parametrize("override, key", [("optimizer.lr=true", "lr"), ("seed=false", "seed"),
                                           ("trainer.epochs=true", "epochs"), ("data.batch_size=false", "batch_size"),
                                           ("optimizer.clip_norm=true", "clip_norm")])
def test_booleans_are_not_numbers(tmp_path, override, key):
    path = write(tmp_path, "name: a\n")
    with pytest.raises(ConfigError, match=f"{key}: expected a number, found (true|false)"):
        load_config(path, [override])
    assert load_config(path, ["optimizer.nesterov=true"]).optimizer.nesterov  # a boolean field takes one


def test_checkpoints_are_ordered_by_their_numbers(tmp_path):
    for name in ("epoch_5000", "epoch_10002", "epoch_9999", "epoch_10002_b00005", "epoch_0007_b00012", ".epoch_20000.tmp",
                 "notes"):
        (tmp_path / name).mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "epoch_0007_b00012", "epoch_5000", "epoch_9999", "epoch_10002", "epoch_10002_b00005"]
