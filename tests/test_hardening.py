"""Inputs that used to end in a traceback, a hang or a silent surprise: duplicate keys, alias
bombs, files that never end, booleans where numbers belong, checkpoints past epoch 9999."""

import os
import time
from pathlib import Path

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


# ------------------------------------------------------------------ damaged checkpoints

import json  # noqa: E402
import shutil  # noqa: E402

from hypothesis import HealthCheck  # noqa: E402

from dlrun.core.errors import CheckpointError  # noqa: E402
from dlrun.core.training import checkpoint  # noqa: E402

CONFIGS = __import__("tests.conftest", fromlist=["CONFIGS"]).CONFIGS


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A linear regression run of 3 epochs that kept all 3 checkpoints, and its template state."""
    from dlrun.core.training.setup import build_setup, start_state
    from dlrun.core.training.train import train

    run = tmp_path_factory.mktemp("ckpt") / "run"
    cfg = load_config(CONFIGS / "linreg.yaml", ["trainer.epochs=3", "trainer.keep_checkpoints=3", "trainer.progress=none"])
    result = train(cfg, run, plot=False)
    template, _ = start_state(build_setup(cfg, __import__("dlrun.core.data", fromlist=["load_dataset"]).load_dataset(cfg.data, 0)),
                              __import__("jax").random.PRNGKey(0))
    return run, template, result.rows


def damaged_copy(run, tmp_path, how):
    copy = tmp_path / "run"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(run, copy)
    newest = checkpoint.list_checkpoints(copy / "checkpoints")[-1]
    how(newest)
    return copy


META_DAMAGE = [
    lambda m: [1, 2, 3],
    lambda m: {k: v for k, v in m.items() if k != "rows"},
    lambda m: {**m, "epoch": -4},
    lambda m: {**m, "epoch": "3"},
    lambda m: {**m, "num_state_arrays": m["num_state_arrays"] + 1},
    lambda m: {**m, "rows": m["rows"][:1]},
    lambda m: {**m, "format": 99},
]


@pytest.mark.parametrize("damage", range(len(META_DAMAGE)))
def test_a_damaged_meta_json_falls_back_to_the_previous_checkpoint(finished_run, tmp_path, damage):
    run, template, rows = finished_run

    def how(path):
        meta = json.loads((path / "meta.json").read_text())
        (path / "meta.json").write_text(json.dumps(META_DAMAGE[damage](meta)))

    copy = damaged_copy(run, tmp_path, how)
    with pytest.raises(CheckpointError, match="meta.json"):
        checkpoint.load(checkpoint.list_checkpoints(copy / "checkpoints")[-1], template)
    heard = []
    ckpt = checkpoint.load_latest(copy / "checkpoints", template, warn=heard.append)
    assert ckpt.position.epoch == 2 and ckpt.rows == rows[:2]
    assert len(heard) == 1 and "epoch_0003" in heard[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(min_value=0.0, max_value=0.999), flips=st.lists(st.integers(min_value=0), min_size=1, max_size=3))
def test_truncated_or_flipped_arrays_are_found(finished_run, tmp_path, cut, flips):
    """Any truncation of arrays.npz, or any flipped byte, is a CheckpointError, never a
    traceback or a silently different state; resuming falls back to the checkpoint before."""
    run, template, _ = finished_run
    for mode in ("truncate", "flip"):
        def how(path, mode=mode):
            data = bytearray((path / "arrays.npz").read_bytes())
            if mode == "truncate":
                data = data[: int(cut * len(data))]
            else:
                for offset in {f % len(data) for f in flips}:  # each byte once: twice would undo it
                    data[offset] ^= 0xFF
            (path / "arrays.npz").write_bytes(bytes(data))

        copy = damaged_copy(run, tmp_path, how)
        with pytest.raises(CheckpointError, match="arrays.npz"):
            checkpoint.load(checkpoint.list_checkpoints(copy / "checkpoints")[-1], template)
        assert checkpoint.load_latest(copy / "checkpoints", template, warn=lambda m: None).position.epoch == 2


def test_no_good_checkpoint_says_so_and_temporary_ones_are_cleaned(finished_run, tmp_path):
    run, template, _ = finished_run
    copy = damaged_copy(run, tmp_path, lambda p: None)
    for path in checkpoint.list_checkpoints(copy / "checkpoints"):
        (path / "arrays.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no good checkpoint to resume from"):
        checkpoint.load_latest(copy / "checkpoints", template)
    (copy / "checkpoints" / ".epoch_0009.abc123").mkdir()  # left by a run killed while writing
    checkpoint.remove_temporary(copy / "checkpoints")
    assert not list((copy / "checkpoints").glob(".epoch_*"))


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_run_files_follow_the_umask(tmp_path, mask):
    """Run directories are shared: files are 0666 and directories 0777 less the umask, not the
    0600/0700 of the temporary files they are written through."""
    import stat

    from dlrun.core.training.train import train

    previous = os.umask(mask)
    try:
        cfg = load_config(CONFIGS / "linreg.yaml", ["trainer.epochs=1", "trainer.progress=none"])
        train(cfg, tmp_path / "run", plot=False)
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "summary.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~mask, name
    (ckpt,) = checkpoint.list_checkpoints(run / "checkpoints")
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((ckpt / "arrays.npz").stat().st_mode) == 0o666 & ~mask


# ----------------------------------------------------------------------------- resume integrity


def test_a_config_edited_between_stop_and_resume_is_refused(tmp_path):
    from dlrun.core.config import load_config
    from dlrun.core.training.train import resume_config
    from dlrun.experiments import run_config

    from .conftest import CONFIGS

    run_dir = tmp_path / "run"
    run_config(load_config(CONFIGS / "linreg.yaml", ["trainer.progress=none", "trainer.epochs=4"]), run_dir, stop_epoch=2)
    text = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(text.replace("lr: 0.03", "lr: 0.5").replace("batch_size: 10", "batch_size: 20"))
    with pytest.raises(ConfigError) as err:
        run_config(resume_config(run_dir), run_dir, resume=True)
    message = str(err.value)
    assert "optimizer.lr (0.03 -> 0.5)" in message and "data.batch_size (10 -> 20)" in message and "epoch_0002" in message
    (run_dir / "config.yaml").write_text(text)  # restored: the resume goes on, and may add epochs
    summary = run_config(resume_config(run_dir, ["trainer.epochs=5", "trainer.log_to=[]"]), run_dir, resume=True)
    assert summary["epochs"] == 5


def test_a_directory_with_another_runs_checkpoints_is_not_fresh(tmp_path):
    from typer.testing import CliRunner

    from dlrun.cli.main import app
    from dlrun.core.config import load_config
    from dlrun.core.errors import RunDirError
    from dlrun.experiments import run_config

    from .conftest import CONFIGS

    old = tmp_path / "run"
    run_config(load_config(CONFIGS / "linreg.yaml", ["trainer.progress=none"]), old)
    for name in ("config.yaml", "metrics.csv", "summary.json", "status.json"):
        (old / name).unlink()
    result = CliRunner().invoke(app, ["train", str(CONFIGS / "linreg.yaml"), "--out", str(old)])
    assert result.exit_code == 2 and "holds checkpoints of another run" in result.output
    with pytest.raises(RunDirError, match="holds checkpoints of another run"):  # the Python API too
        run_config(load_config(CONFIGS / "linreg.yaml", ["trainer.progress=none"]), old)


# ----------------------------------------------------------------------------- sweep edge cases


@pytest.mark.parametrize("dist, phrase", [
    ("uniform(0, inf)", "finite bounds"), ("uniform(-1e308, 1e308)", "finite difference"),
    ("loguniform(1e-3, .nan)", "finite bounds"), ("randint(0, 100000000000000000000)", "within"),
    ("loguniform(0, 1)", "low > 0"), ("uniform(1, 1)", "low < high"),
])
def test_distribution_bounds_are_checked(dist, phrase):
    from dlrun.core.sweep.spec import parse_distribution

    with pytest.raises(ConfigError, match=phrase):
        parse_distribution(dist, "s.yaml: parameters.optimizer.lr")


def run_cli(*args):
    from typer.testing import CliRunner

    from dlrun.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_a_sweep_target_that_no_trial_reports_is_refused(tmp_path):
    from .conftest import CONFIGS

    result = run_cli("sweep", str(CONFIGS / "linreg.yaml"), "--grid", "optimizer.lr=0.01,0.03", "--metric", "val/acc",
                     "--out", str(tmp_path / "sw"))
    assert result.exit_code == 2 and "never report 'val/acc'" in result.output and "val/loss" in result.output
    assert not (tmp_path / "sw").exists()


def test_a_repeated_grid_key_is_refused():
    from .conftest import CONFIGS

    result = run_cli("sweep", str(CONFIGS / "linreg.yaml"), "--grid", "optimizer.lr=0.01", "--grid", "optimizer.lr=0.1", "--dry-run")
    assert result.exit_code == 2 and "optimizer.lr is given twice" in result.output


def test_a_huge_sweep_is_counted_and_refused_at_once():
    from .conftest import CONFIGS

    grid = [a for k in ("optimizer.lr", "optimizer.momentum", "seed") for a in ("--grid", f"{k}=" + ",".join(str(i / 1000) if k != "seed" else str(i) for i in range(1, 101)))]
    t0 = time.monotonic()
    result = run_cli("sweep", str(CONFIGS / "linreg.yaml"), *grid, "--dry-run")
    assert result.exit_code == 2 and "1,000,000 trials, more than 10,000" in result.output and "--max-trials 1000000" in result.output
    assert time.monotonic() - t0 < 10


def test_resume_remakes_a_deleted_trial_directory(tmp_path):
    import shutil

    from .conftest import CONFIGS

    base = tmp_path / "linreg.yaml"
    shutil.copy(CONFIGS / "linreg.yaml", base)
    sw = tmp_path / "sw"
    result = run_cli("sweep", str(base), "--grid", "optimizer.lr=0.01,0.03", "--set", "trainer.epochs=1", "--out", str(sw))
    assert result.exit_code == 0, result.output
    gone = sorted((sw / "trials").iterdir())[0]
    shutil.rmtree(gone)
    result = run_cli("sweep", "--resume", str(sw))
    assert result.exit_code == 0, result.output
    assert "were missing and are made again" in result.output and (gone / "summary.json").is_file()
    shutil.rmtree(gone)  # the base changed since: the trial cannot be made as it was
    base.write_text(base.read_text().replace("batch_size: 10", "batch_size: 20"))
    result = run_cli("sweep", "--resume", str(sw))
    assert result.exit_code == 2 and "has changed since the sweep began (data.batch_size)" in result.output


# ----------------------------------------------------------------------------- data files and gradcheck


@pytest.mark.parametrize("value, shown", [("inf", "inf"), ("1e300", "1e+300"), ("-inf", "-inf")])
def test_a_non_finite_or_absurd_number_in_a_csv_is_a_data_error(tmp_path, value, shown):
    from dlrun.core.data.tabular import read_table
    from dlrun.core.errors import DataError

    path = tmp_path / "t.csv"
    path.write_text(f"a,b,price\n1,x,10\n2,,11\n{value},y,12\n")
    with pytest.raises(DataError) as err:
        read_table(path)
    assert f"{path}: column 'a' holds {shown} at line 4" in str(err.value)
    path.write_text("a,b,price\n1,x,10\nNA,,11\n")  # a missing value is not a bad one
    assert len(read_table(path)) == 2


@pytest.mark.parametrize("shape", [(0, 28, 28), (5, 0, 28)])
def test_an_idx_file_with_no_images_is_named(tmp_path, shape):
    import numpy as np

    from dlrun.core.data.fashion_mnist import _read_checked
    from dlrun.core.data.idx import write_idx
    from dlrun.core.errors import DataError

    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros(shape, np.uint8))
    with pytest.raises(DataError, match=f"{path}: declares"):
        _read_checked(path, 0x803)


def test_an_idx_header_with_impossible_sizes_is_named(tmp_path):
    from dlrun.core.data.idx import IDXError, parse_idx

    header = bytes([0, 0, 0x08, 3]) + b"".join((2**32 - 1).to_bytes(4, "big") for _ in range(3))
    with pytest.raises(IDXError, match="x.idx: header declares shape"):
        parse_idx(header + b"\x00" * 16, "x.idx")


@pytest.fixture
def float32_after():
    """`dlrun gradcheck` in this process turns on float64 for good: turn it off again."""
    yield
    import jax

    jax.config.update("jax_enable_x64", False)


def test_gradcheck_never_passes_a_nan(tmp_path, monkeypatch, float32_after):
    from typer.testing import CliRunner

    from dlrun.cli.main import app
    from dlrun.core.training import gradcheck as gc

    from .conftest import CONFIGS

    runner = CliRunner()
    assert runner.invoke(app, ["gradcheck", str(CONFIGS / "linreg.yaml"), "--tol", "nan"]).exit_code == 2
    assert runner.invoke(app, ["gradcheck", str(CONFIGS / "linreg.yaml"), "--per-leaf", "0"]).exit_code == 2
    real = gc.gradcheck

    def with_a_nan(cfg, **kw):
        result = real(cfg, **kw)
        rows = [dict(result.rows[0], rel_error=float("nan")), *result.rows[1:]]
        return gc.GradCheck(float(__import__("numpy").max([r["rel_error"] for r in rows])), result.checked, rows)

    monkeypatch.setattr(gc, "gradcheck", with_a_nan)
    result = runner.invoke(app, ["gradcheck", str(CONFIGS / "linreg.yaml")])
    assert result.exit_code == 1 and "FAILED" in result.output and "not finite" in result.output


# ----------------------------------------------------------------------------- compare and list over bad entries


def test_compare_leaves_out_each_bad_run_with_a_message(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from dlrun.cli.main import app
    from dlrun.experiments import run_config

    from .conftest import CONFIGS

    good = tmp_path / "good"
    run_config(load_config(CONFIGS / "linreg.yaml", ["trainer.progress=none", "trainer.epochs=1"]), good)
    bad = {"empty": ("metrics.csv", b""), "binary": ("metrics.csv", b"\x00\xff\x12\x80"), "config": ("config.yaml", b"x: [")}
    for name, (file, content) in bad.items():
        shutil.copytree(good, tmp_path / name)
        (tmp_path / name / file).write_bytes(content)
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(good), *(str(tmp_path / n) for n in bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name, (file, _) in bad.items():
        assert f"warning: {tmp_path / name / file}: cannot be read" in result.output
    assert (tmp_path / "out" / "results.csv").read_text().count("\n") == 2  # the header and the good run
    result = runner.invoke(app, ["compare", *(str(tmp_path / n) for n in bad), "--out", str(tmp_path / "out2")])
    assert result.exit_code == 2 and "nothing to compare" in result.output


def test_list_says_which_config_is_unreadable_and_lists_the_rest(tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from dlrun.cli import listing
    from dlrun.cli.main import app

    from .conftest import CONFIGS

    shutil.copy(CONFIGS / "linreg.yaml", tmp_path / "linreg.yaml")
    shutil.copy(CONFIGS / "mlp.yaml", tmp_path / "secret.yaml")
    real = listing.header_comment

    def header_comment(path):  # as a file without read permission behaves (tests may run as root)
        if Path(path).name == "secret.yaml":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(listing, "header_comment", header_comment)
    result = CliRunner().invoke(app, ["list", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "secret.yaml  (unreadable: Permission denied)" in result.output and "3.2 val/loss" in result.output


# ----------------------------------------------------------------------------- messages in the project's words


@pytest.mark.parametrize("override, phrase", [
    ("seed=123456789012345678901", "seed: expected a number of at most 4294967295"),
    ("name=bad/name", "name: expected a name of letters, digits"),
    ("trainer.epochs=0", "trainer.epochs: expected a number above 0"),
    ("optimizer.lr=abc", "optimizer.lr: expected a number, found 'abc'"),
    ("model.hidden=[1.5]", "expected a whole number, found 1.5"),
    ("book={section: '4.6', metric: val/acc}", "book.reported: required, but not given"),
    ("book={section: 'four', metric: val/acc, reported: [1, 2]}", "book.section: expected a section number such as 4.6"),
    ("trainer.mlflow_uri=''", "trainer.mlflow_uri: expected text of at least 1 character"),
])
def test_config_errors_name_the_set_and_speak_plainly(override, phrase):
    from .conftest import CONFIGS

    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "mlp.yaml", [override])
    message = str(err.value)
    assert message.startswith(f"--set {override}") and phrase in message, message
    for pydantic_words in ("Input should", "String should", "Field required", "valid integer", "Value error"):
        assert pydantic_words not in message


def test_the_divergence_advice_does_not_suggest_a_resume(tmp_path):
    from dlrun.core.errors import TrainingDiverged
    from dlrun.experiments import run_config

    from .conftest import CONFIGS

    with pytest.raises(TrainingDiverged) as err:
        run_config(load_config(CONFIGS / "linreg.yaml", ["trainer.progress=none", "optimizer.lr=100"]), tmp_path / "run")
    assert "Start a new run with a lower optimizer.lr" in str(err.value) and "resuming keeps the config" in str(err.value)


@pytest.mark.parametrize("overrides, phrase", [
    (["model.hidden=[1000000000]"], "the model's 795,000,000,010 parameters"),
    (["data.resize=100000", "model.hidden=[8]"], "a batch of 16 examples of 100000x100000x1 floats need at least 640 GB"),
])
def test_sizes_that_cannot_fit_are_refused_with_the_estimate(tmp_path, fake_fmnist_dir, overrides, phrase):
    from typer.testing import CliRunner

    from dlrun.cli.main import app

    from .conftest import CONFIGS

    sets = [a for o in [f"data.dir={fake_fmnist_dir}", "data.batch_size=16", *overrides] for a in ("--set", o)]
    t0 = time.monotonic()
    result = CliRunner().invoke(app, ["train", str(CONFIGS / "mlp.yaml"), *sets, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert phrase in result.output and "more than" in result.output and "smaller" in result.output
    assert time.monotonic() - t0 < 60  # refused from the shapes, before anything is allocated


def test_a_file_name_too_long_is_refused_before_anything_is_made(tmp_path):
    from typer.testing import CliRunner

    from dlrun.cli.main import app

    from .conftest import CONFIGS

    runner = CliRunner()
    result = runner.invoke(app, ["train", str(CONFIGS / "linreg.yaml"), "--out", str(tmp_path / "d" / ("a" * 300))])
    assert result.exit_code == 2 and "a file name of 300 bytes" in result.output
    assert not (tmp_path / "d").exists()
    result = runner.invoke(app, ["sweep", str(CONFIGS / "linreg.yaml"), "--grid", "optimizer.lr=0.1",
                                 "--out", str(tmp_path / ("s" * 300))])
    assert result.exit_code == 2 and "a file name of 300 bytes" in result.output


@pytest.mark.parametrize("text", ["seed: !!int x\n", "when: 2020-13-45\n", "at: !!timestamp x\n", "n: !!float [1]\n"])
def test_a_value_that_yaml_cannot_read_as_its_tag_says_is_a_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\n" + text)
    with pytest.raises(ConfigError, match=r"c\.yaml: is not valid YAML"):
        load_config(path)
