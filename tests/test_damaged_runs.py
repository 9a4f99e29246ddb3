"""`dlrun runs` and `dlrun compare` over damaged run directories: fields of the wrong type, a FIFO
or a directory where a file belongs, cells that are not numbers, alias bombs, an --out that cannot
be written. The good runs are listed, each bad one is named and left out, nothing hangs and
nothing ends in a traceback."""

import csv
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlrun.cli.main import app

from .conftest import CONFIGS

FILES = ("status.json", "summary.json", "metrics.csv", "config.yaml")
ALIAS_BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"]
                       + [f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi")]) + "\n"
# what each damage writes in place of the file ("fifo" and "directory" put a special file there), and its name
DAMAGES = {f"{f}-{kind}": (f, kind) for f in FILES for kind in ("fifo", "directory")} | {
    "status.json-list": ("status.json", '["done"]'), "status.json-deep": ("status.json", "[" * 100_000),
    "summary.json-list": ("summary.json", "[1, 2]"), "summary.json-epochs": ("summary.json", '{"epochs": "one"}'),
    "summary.json-deep": ("summary.json", '{"a": ' * 100_000), "metrics.csv-non-numeric": ("metrics.csv", "non-numeric"),
    "metrics.csv-no-epoch": ("metrics.csv", "epoch,val/loss\n,0.5\n"), "config.yaml-alias-bomb": ("config.yaml", ALIAS_BOMB),
    "config.yaml-list": ("config.yaml", "- a\n- b\n"), "config.yaml-bad-int": ("config.yaml", "seed: !!int x\n"),
    "config.yaml-bad-timestamp": ("config.yaml", "seed: !!timestamp x\n"),
    "config.yaml-bad-date": ("config.yaml", "seed: 2020-13-45\n"),
}
NOT_READ_BY_RUNS = {("metrics.csv", "non-numeric"), ("metrics.csv", "epoch,val/loss\n,0.5\n")}  # runs counts lines only
RUNS_DAMAGES = {k: v for k, v in DAMAGES.items() if v not in NOT_READ_BY_RUNS}
COMPARE_DAMAGES = {k: v for k, v in DAMAGES.items() if k != "config.yaml-list"}  # test_hardening has that one
# status.json's fields and what each must hold (None: not set); write_json writes NaN as "nan"
NUMBER_WORDS = ("nan", "inf", "-inf")
STATUS_FIELDS = {"status": str, "started": str, "updated": str, "host": str, "error": str,
                 "pid": int, "planned": int, "epochs": int, "rung": int, "seconds": float}
NO_PLOTS = ["--metric", "val/none"]  # a target no run has: the table without plots, where plots are not the point (5x faster)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Two finished runs that differ in optimizer.lr: one trained (in a subprocess, so that this
    process starts no JAX threads before it forks), the other its copy."""
    root = tmp_path_factory.mktemp("good")
    train = [sys.executable, "-c", "from dlrun.cli.main import main; main()", "train", str(CONFIGS / "linreg.yaml"),
             "--set", "trainer.epochs=1", "--set", "trainer.progress=none", "--out", str(root / "good-a")]
    subprocess.run(train, check=True, capture_output=True, timeout=300)
    shutil.copytree(root / "good-a", root / "good-b")
    config = yaml.safe_load((root / "good-b" / "config.yaml").read_text())
    config["optimizer"]["lr"] = 0.05
    (root / "good-b" / "config.yaml").write_text(yaml.safe_dump(config))
    # one comparison here imports pandas and matplotlib once, for every forked command after it
    warm = CliRunner().invoke(app, ["compare", str(root / "good-a"), str(root / "good-b"), "--out", str(root / "warm")])
    assert warm.exit_code == 0, warm.output
    return root / "good-a", root / "good-b"


def damaged(source: Path, where: Path, file: str, damage: str) -> Path:
    """A copy of the run `source` at `where` whose `file` is replaced by `damage`."""
    shutil.copytree(source, where)
    path = where / file
    text = path.read_text()
    path.unlink()
    if damage == "fifo":
        os.mkfifo(path)
    elif damage == "directory":
        path.mkdir()
        (path / "inside").write_text(text)
    elif damage == "non-numeric":
        header, row, *rest = text.splitlines()
        cells = row.split(",")
        cells[header.split(",").index("val/loss")] = "abc"
        path.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
    else:
        path.write_text(damage)
    return where


class Result(NamedTuple):
    exit_code: int
    output: str  # stdout and stderr
    stdout: str


def invoke(args: list[str], timeout: float = 20) -> Result:
    """The command through CliRunner in a forked child, which is killed if it does not finish in
    time: a command that hangs (opening a FIFO waits for a writer; an alias bomb expanded fills
    memory) fails the test instead of blocking it. A traceback or internal error fails it too."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the command, send back what it printed, end without cleaning up
        os.close(read_end)
        try:
            result = CliRunner().invoke(app, args)
            crash = result.exception if not isinstance(result.exception, (SystemExit, type(None))) else None
            report = [result.exit_code, result.output + (f"\nTraceback: {crash!r}" if crash else ""), result.stdout]
        except BaseException as err:  # noqa: BLE001 - whatever it is, the parent reports it
            report = [-1, f"Traceback: {err!r}", ""]
        with os.fdopen(write_end, "w") as f:
            json.dump(report, f)
        os._exit(0)
    os.close(write_end)
    data, deadline = b"", time.monotonic() + timeout
    with os.fdopen(read_end, "rb") as f:
        while (left := deadline - time.monotonic()) > 0 and select.select([f], [], [], left)[0]:
            chunk = os.read(f.fileno(), 1 << 16)
            if not chunk:
                break
            data += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"dlrun {' '.join(args)} did not finish within {timeout} s")
    os.waitpid(pid, 0)
    result = Result(*json.loads(data))
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return result


def rows_of_results(out: Path) -> list[list[str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.reader(f))[1:]


@pytest.mark.parametrize("file, damage", RUNS_DAMAGES.values(), ids=RUNS_DAMAGES.keys())
def test_runs_lists_a_damaged_run_and_names_what_is_wrong(good, tmp_path, file, damage):
    root = tmp_path / "outputs"
    shutil.copytree(good[0], root / "good-a")
    bad = damaged(good[0], root / "bad", file, damage)
    result = invoke(["runs", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("good-a ") and "val/loss" in line for line in lines), result.output
    assert any(line.startswith("bad ") for line in lines), result.output
    if (file, damage) not in NOT_READ_BY_RUNS:
        assert f"{bad / file}: " in result.output, result.output
    listing = json.loads(invoke(["runs", str(root), "--json"]).stdout)
    assert {r["name"] for r in listing} == {"good-a", "bad"}


@pytest.mark.parametrize("file, damage", COMPARE_DAMAGES.values(), ids=COMPARE_DAMAGES.keys())
def test_compare_leaves_out_a_damaged_run_naming_the_file(good, tmp_path, file, damage):
    bad = damaged(good[0], tmp_path / "bad", file, damage)
    result = invoke(["compare", str(good[0]), str(good[1]), str(bad), "--out", str(tmp_path / "out"), *NO_PLOTS])
    assert result.exit_code == 0, result.output
    assert f"warning: {bad / file}: " in result.output and "left out" in result.output, result.output
    assert [r[0] for r in rows_of_results(tmp_path / "out")] == [str(good[0]), str(good[1])]


def test_every_damage_at_once(good, tmp_path):
    root = tmp_path / "outputs"
    shutil.copytree(good[0], root / "good-a")
    bad = [damaged(good[0], root / f"bad-{i}", f, d) for i, (f, d) in enumerate(DAMAGES.values())]
    result = invoke(["runs", str(root)])
    assert result.exit_code == 0 and result.output.count("good-a ") == 1, result.output
    for run, (file, damage) in zip(bad, DAMAGES.values()):
        assert f"\n{run.name} " in "\n" + result.output, result.output
        assert (file, damage) in NOT_READ_BY_RUNS or f"{run / file}: " in result.output, result.output
    result = invoke(["compare", str(root / "good-a"), *map(str, bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert all(f"warning: {run / file}: " in result.output for run, (file, _) in zip(bad, DAMAGES.values())), result.output
    assert len(rows_of_results(tmp_path / "out")) == 1
    result = invoke(["compare", *map(str, bad), "--out", str(tmp_path / "out2")])
    assert result.exit_code == 2 and "nothing to compare" in result.output, result.output
    assert all(str(run / file) in result.output for run, (file, _) in zip(bad, DAMAGES.values()))


def _wrong(field: str, value) -> bool:
    """Whether status.json's `field` holding `value` is damage (None means the field is not set)."""
    kind = STATUS_FIELDS[field]
    if value is None:
        return False
    if kind is float:
        return not (isinstance(value, (int, float)) and not isinstance(value, bool) or value in NUMBER_WORDS)
    return not isinstance(value, kind) or isinstance(value, bool)


@settings(max_examples=12, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(sorted(STATUS_FIELDS)), JSON_VALUES, min_size=1, max_size=4))
def test_status_json_with_fields_of_any_type(good, tmp_path_factory, fields):
    root = tmp_path_factory.mktemp("outputs")
    shutil.copytree(good[0], root / "good-a")
    bad = root / "bad"
    shutil.copytree(good[0], bad)
    record = json.loads((bad / "status.json").read_text()) | fields
    (bad / "status.json").write_text(json.dumps(record))
    wrong = sorted(k for k, v in fields.items() if _wrong(k, v))
    result = invoke(["runs", str(root)])
    assert result.exit_code == 0 and "\ngood-a " in "\n" + result.output and "\nbad " in "\n" + result.output, result.output
    for key in wrong:
        assert f"{bad / 'status.json'}: {key}: expected " in result.output, result.output
    listing = {r["name"]: r for r in json.loads(invoke(["runs", str(root), "--json"]).stdout)}
    assert all(isinstance(listing["bad"][k], str) for k in ("status", "started", "error"))
    result = invoke(["compare", str(root / "good-a"), str(bad), "--out", str(root / "out"), *NO_PLOTS])
    assert result.exit_code == 0, result.output
    assert (f"warning: {bad / 'status.json'}: " in result.output) == bool(wrong), result.output
    assert len(rows_of_results(root / "out")) == (1 if wrong else 2)


SETTINGS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.lists(JSON_VALUES, max_size=3)
            | st.sampled_from(["2020-01-01", {1: "a", "b": 2}, [{1: 2, "a": 3}]]))  # a date; keys of mixed types


@settings(max_examples=10, deadline=None)
@given(lr=SETTINGS)
def test_compare_over_a_setting_of_any_type(good, tmp_path_factory, lr):
    """A config value of another type than its neighbours' (a damaged or hand-edited config.yaml)
    is shown as it is, in the table and the plots."""
    root = tmp_path_factory.mktemp("runs")
    odd = root / "odd"
    shutil.copytree(good[0], odd)
    config = yaml.safe_load((odd / "config.yaml").read_text())
    config["optimizer"]["lr"] = lr
    text = yaml.safe_dump(config, sort_keys=False)
    (odd / "config.yaml").write_text(text.replace("lr: '2020-01-01'", "lr: 2020-01-01"))  # a date, as YAML reads it
    result = invoke(["compare", str(good[0]), str(odd), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    assert len(rows_of_results(root / "out")) == 2
    result = invoke(["runs", str(root)])
    assert result.exit_code == 0 and result.output.startswith("odd "), result.output


def test_compare_out_that_cannot_be_written_is_a_usage_error(good, tmp_path):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    for out in (existing, existing / "sub"):
        result = invoke(["compare", str(good[0]), str(good[1]), "--out", str(out)])
        assert result.exit_code == 2 and f"--out {out}: " in result.output, result.output
    assert existing.read_text() == "keep me"
    if os.geteuid() == 0:
        return  # root writes into a read-only directory; the cases above fail for root too
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        for out in (locked, locked / "sub"):
            result = invoke(["compare", str(good[0]), str(good[1]), "--out", str(out)])
            assert result.exit_code == 2 and f"--out {out}: " in result.output, result.output
    finally:
        locked.chmod(0o700)
