"""`dlrun reproduce` stopped and resumed as `dlrun sweep` is: SIGINT or SIGTERM mid-way exits 130
with the command that resumes it; that command (after SIGKILL too) finishes exactly what is
missing, each unfinished run resumed from its checkpoint or run again, and keeps what finished; a
directory that is not a report is refused before anything is written into it."""

import json
import signal
import subprocess
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.training.checkpoint import list_checkpoints

from .conftest import CONFIGS
from .test_reliability import DLRUN

runner = CliRunner()
NAMES = ("a", "b", "c")


@pytest.fixture
def book_configs(tmp_path):
    """Three copies of the 3.2 config, each long enough (one step per batch) to be stopped inside."""
    folder = tmp_path / "configs"
    folder.mkdir()
    text = (CONFIGS / "linreg.yaml").read_text().replace("  epochs: 3", "  epochs: 60\n  loop: step")
    for name in NAMES:
        (folder / f"{name}.yaml").write_text(text.replace("name: linreg", f"name: {name}"))
    return folder


def start(book_configs, report, *extra):
    return subprocess.Popen(DLRUN + ["reproduce", "3.2", "--configs", str(book_configs), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"the report ended before the moment came (exit code {proc.poll()})")


def finish(report):
    result = runner.invoke(app, ["reproduce", "--resume", str(report)])
    assert result.exit_code in (0, 1), result.output  # 1: short of the book, which a verdict may be
    table = pd.read_csv(report / "reproduction.csv")
    assert sorted(table["config"]) == list(NAMES) and set(table["verdict"]) <= {"within", "better", "short"}, table
    return result.output


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_way_exits_130_with_the_resume_command_and_resume_finishes_the_rest(book_configs, tmp_path, sig):
    report = tmp_path / "report"
    proc = start(book_configs, report, "--out", str(report))
    wait_until(lambda: (report / "a" / "reproduce.json").is_file() and list_checkpoints(report / "b" / "checkpoints"), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert f"dlrun reproduce --resume {report}" in err and "Traceback" not in err + out
    assert not (report / "c" / "reproduce.json").is_file()
    output = finish(report)
    assert "kept    3.2    a" in output and "done    3.2    c" in output


@pytest.mark.slow
def test_resume_after_sigkill_resumes_or_redoes_the_killed_run(book_configs, tmp_path):
    report = tmp_path / "report"
    proc = start(book_configs, report, "--out", str(report))
    wait_until(lambda: len(list_checkpoints(report / "b" / "checkpoints")) >= 1, proc)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    output = finish(report)
    assert "holds checkpoints of another run" not in output and "  failed " not in output
    b = json.loads((report / "b" / "summary.json").read_text())
    assert b["epochs"] == 60


def test_a_stop_between_configs_is_not_lost(book_configs, tmp_path, monkeypatch):
    """A stop asked for while a run closes (after its last epoch) stops the report after it."""
    from dlrun.core.training import signals

    report = tmp_path / "report"
    real = signals.StopFlag.installed

    def installed(self):  # the report's own flag is asked to stop as soon as it is installed
        self.requested, self.signal_name = True, "SIGTERM"
        return real(self)

    monkeypatch.setattr(signals.StopFlag, "installed", installed)
    result = runner.invoke(app, ["reproduce", "3.2", "--configs", str(book_configs), "--out", str(report)])
    assert result.exit_code == 130, result.output
    assert f"dlrun reproduce --resume {report}" in result.output
    assert "after 1 of 3 configs" in result.output or "before" in result.output


@pytest.mark.parametrize("content", ["empty", "files"])
def test_resume_of_a_directory_that_is_not_a_report_is_refused_and_writes_nothing(tmp_path, content):
    target = tmp_path / "not-a-report"
    target.mkdir()
    if content == "files":
        (target / "notes.txt").write_text("mine\n")
        (target / "run").mkdir()
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    result = runner.invoke(app, ["reproduce", "--resume", str(target), "--configs", str(CONFIGS)])
    assert result.exit_code == 2, result.output
    assert "--resume" in result.output and "not a report" in result.output
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


@pytest.mark.parametrize("damage", ["[1, 2]", "\"done\"", "{\"status\": \"done\", \"summary\": 3}", "{truncated"])
def test_a_damaged_reproduce_json_is_run_again_not_an_internal_error(book_configs, tmp_path, damage):
    report = tmp_path / "report"
    first = runner.invoke(app, ["reproduce", "3.2", "--configs", str(book_configs), "--out", str(report),
                                "--quick"])
    assert first.exit_code == 0, first.output
    (report / "b" / "reproduce.json").write_text(damage)
    result = runner.invoke(app, ["reproduce", "--resume", str(report), "--configs", str(book_configs)])
    assert result.exit_code == 0, result.output
    assert "internal error" not in result.output
    assert "kept    3.2    a" in result.output and "done    3.2    b" in result.output
    assert json.loads((report / "b" / "reproduce.json").read_text())["status"] == "done"
