"""`dlrun reproduce`: verdicts, selection, a real report of two fast sections, --resume, --quick,
and the HTML page rendered by a real headless browser."""

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import header_comment, load_config
from dlrun.core.errors import ConfigError
from dlrun.core.report.reproduce import matches, select, verdict

from .conftest import CONFIGS


@pytest.mark.parametrize("value, better, expected", [
    (0.85, "higher", "within"), (0.80, "higher", "within"), (0.90, "higher", "within"),
    (0.91, "higher", "better"), (0.79, "higher", "short"),
    (0.85, "lower", "within"), (0.79, "lower", "better"), (0.91, "lower", "short"),
    (None, "higher", "failed"), (float("nan"), "lower", "failed"), (float("inf"), "higher", "failed"),
])
def test_verdicts(value, better, expected):
    assert verdict(value, (0.80, 0.90), better) == expected


def test_sections_and_chapters_select_by_whole_numbers():
    assert matches("4.6", "4") and matches("4.6.2", "4.6") and matches("4.6", "4.6")
    assert not matches("40.1", "4") and not matches("4.60", "4.6") and not matches("4", "4.6")


def write_config(directory, name, section, metric="val/loss", reported=(0.1, 0.2), better="lower", extra="",
                 data="{name: synthetic_regression, batch_size: 10}"):
    path = directory / f"{name}.yaml"
    path.write_text(f"# {name}: what it is\nname: {name}\ndata: {data}\n"
                    "model: {name: linear_regression}\nloss: {name: squared_error}\n"
                    f"book: {{section: '{section}', metric: {metric}, reported: {list(reported)}, better: {better}}}\n{extra}")
    return path


def test_select_by_section_chapter_and_file(tmp_path):
    for name, section in (("a", "3.2"), ("b", "3.10"), ("c", "4.5"), ("d", "31.1")):
        write_config(tmp_path, name, section)
    (tmp_path / "plain.yaml").write_text("# no book result\nname: plain\n")
    assert [e.name for e in select(tmp_path, [])] == ["a", "b", "c", "d"]  # by section: 3.2 < 3.10
    assert [e.name for e in select(tmp_path, ["3"])] == ["a", "b"]
    assert [e.name for e in select(tmp_path, ["4.5", "3.2"])] == ["a", "c"]
    assert [e.name for e in select(tmp_path, [str(tmp_path / "d.yaml")])] == ["d"]
    with pytest.raises(ConfigError, match="no config reproduces section or chapter 5"):
        select(tmp_path, ["5"])
    with pytest.raises(ConfigError, match="declares no book result"):
        select(tmp_path, [str(tmp_path / "plain.yaml")])


@pytest.mark.parametrize("book, message", [
    ("{section: '4.x', metric: val/acc, reported: [0.8, 0.9]}", "section"),
    ("{section: '4.6', metric: val/acc, reported: [0.9, 0.8]}", "low"),
    ("{section: '4.6', metric: val/acc, reported: [0.8, 0.9], better: more}", "better"),
    ("{section: '4.6', metric: val/ppl, reported: [0.8, 0.9]}", "never reports"),
])
def test_a_bad_book_section_is_a_config_error(tmp_path, book, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: c\nbook: {book}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_every_book_metric_is_one_the_run_reports():
    """Each config's declared metric is among what its summary reports (checked at load time for
    the training loop; here for the experiments too, by their declared metrics)."""
    from dlrun.experiments import EXPERIMENTS

    declared = 0
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(path)
        if cfg.book is None:
            continue
        declared += 1
        if cfg.experiment.name != "train":
            assert cfg.book.metric in EXPERIMENTS[cfg.experiment.name].metrics, path.name
    assert declared >= 40


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """`dlrun reproduce 3.2 4.5` at full size: linear regression and weight decay, seconds each."""
    out = tmp_path_factory.mktemp("reproduce") / "report"
    result = CliRunner().invoke(app, ["reproduce", "3.2", "4.5", "--out", str(out), "--configs", str(CONFIGS)])
    return out, result


def test_a_real_report_of_two_sections(report):
    out, result = report
    table = pd.read_csv(out / "reproduction.csv")
    assert sorted(table["config"]) == ["linreg", "weight_decay_concise_l3", "weight_decay_scratch_l3"]
    assert set(table["verdict"]) <= {"within", "better", "short"}
    for _, row in table.iterrows():  # the verdict agrees with the run's own summary
        summary = json.loads((out / row["config"] / "summary.json").read_text())
        assert row["ours"] == pytest.approx(summary[row["metric"]], rel=1e-5)
        assert row["verdict"] == verdict(summary[row["metric"]], (row["book_low"], row["book_high"]), row["better"])
    short = table[table["verdict"] == "short"]
    assert result.exit_code == (1 if len(short) else 0), result.output
    md = (out / "reproduction.md").read_text()
    assert "at or above the book" in md and "| 4.5 |" in md
    page = (out / "reproduction.html").read_text()
    assert "http://" not in page and "https://" not in page and page.count("data:image/png;base64,") >= 3


def test_resume_keeps_finished_runs(report, tmp_path):
    out, _ = report
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (copy / "linreg" / "metrics.csv").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["reproduce", "3.2", "4.5", "--resume", str(copy), "--configs", str(CONFIGS)])
    assert result.output.count("  kept ") == 3, result.output
    assert (copy / "linreg" / "metrics.csv").stat().st_mtime_ns == before
    assert pd.read_csv(copy / "reproduction.csv")["ours"].tolist() == pd.read_csv(out / "reproduction.csv")["ours"].tolist()


def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    write_config(configs, "good", "3.2", reported=(0.0, 100.0), extra="trainer: {epochs: 1}\n")
    write_config(configs, "bad", "3.3", extra="trainer: {epochs: 1}\n", data="{name: csv, file: missing.csv}")
    result = CliRunner().invoke(app, ["reproduce", "--out", str(tmp_path / "r"), "--configs", str(configs)])
    assert result.exit_code == 1 and "bad (failed)" in result.output
    table = pd.read_csv(tmp_path / "r" / "reproduction.csv").set_index("config")
    assert table.loc["good", "verdict"] == "within" and table.loc["bad", "verdict"] == "failed"
    assert "missing.csv" in table.loc["bad", "error"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_the_html_page_renders_in_a_headless_browser(report, tmp_path):
    """Chromium loads the page from disk and dumps its DOM after scripts and images: one table row
    per config, and every image decoded (naturalWidth > 0, checked by a script in the page)."""
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium (apt-get install chromium)")
    out, _ = report
    page = tmp_path / "check.html"
    checker = ("<script>window.addEventListener('load', () => {const imgs = [...document.images];"
               "document.body.setAttribute('data-images', imgs.length);"
               "document.body.setAttribute('data-broken', imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length);"
               "document.body.setAttribute('data-rows', document.querySelectorAll('#results tbody tr').length);});</script>")
    page.write_text((out / "reproduction.html").read_text().replace("</body>", checker + "</body>"))
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-rows="3"' in dom, dom[:500]
    assert 'data-broken="0"' in dom and 'data-images="0"' not in dom, dom[:500]


def runs_on_a_cpu(path) -> bool:
    """Not one of the book-sized configs whose header says "For a GPU" (AlexNet at 224, ...: a
    minute each even at --quick's size on 2 cores), nor one that asks for several devices."""
    cfg = load_config(path)
    return "For a GPU" not in " ".join(header_comment(path)) and cfg.trainer.devices == 1


def data_is_here(cfg) -> bool:
    """Whether the data a config reads can be found without a download (the book's MovieLens,
    click, banana, VOC and Kaggle files are not on this machine)."""
    import os
    from unittest import mock

    from dlrun.core.data import load_dataset
    from dlrun.core.errors import DataNotFoundError

    if cfg.experiment.name != "train":  # an experiment reads what its options say
        return True
    with mock.patch.dict(os.environ, {"DLRUN_OFFLINE": "1"}):
        try:
            load_dataset(cfg.data, cfg.seed)
        except DataNotFoundError:
            return False
    return True


QUICK_CONFIGS = [p for p in sorted(CONFIGS.glob("*.yaml")) if load_config(p).book is not None and runs_on_a_cpu(p)]


def family(path: Path) -> tuple:
    """What a config's end-to-end run exercises: its procedure, data, model and cell. Configs of
    one family differ in optimizer, schedule, batch size, initialisation or data source, which
    the registry tests (every optimizer, schedule and loss trains) and the family tests cover."""
    cfg = load_config(path)
    return cfg.experiment.name, cfg.data.name, cfg.model.name, getattr(cfg.model, "cell", None)


# one config per family end to end (the last by name: a CPU-sized or offline variant sorts after the book's)
FAMILIES = list({family(p): p for p in QUICK_CONFIGS}.values())
# families whose config another test already trains end to end through the one loop, and whose
# quick run here would cost the suite over a minute more (detection's evaluation, beam decoding);
# gpu_check's smoke run trains configs/transformer.yaml at a tiny size until its loss falls
ELSEWHERE = {
    "tiny_ssd_cpu": ("test_ssd.py", "test_a_short_run_through_the_one_loop_lowers_the_loss"),
    "transformer": ("test_gpu_check.py", "test_the_smoke_run_trains_its_configs_and_writes_its_report"),
}
QUICK_FAMILIES = [p for p in FAMILIES if p.stem not in ELSEWHERE]


def test_quick_covers_the_book_results():
    assert len(QUICK_CONFIGS) >= 60 and len(FAMILIES) >= 35
    assert {family(p) for p in FAMILIES} == {family(p) for p in QUICK_CONFIGS}
    assert set(ELSEWHERE) <= {p.stem for p in FAMILIES}


@pytest.mark.parametrize("stem", sorted(ELSEWHERE))
def test_a_family_left_out_here_is_trained_by_the_test_named(stem):
    module, name = ELSEWHERE[stem]
    text = (Path(__file__).parent / module).read_text()
    assert f"def {name}(" in text and (f'"{stem}.yaml"' in text or f'"{stem}"' in text), (module, name)


@pytest.mark.slow
@pytest.mark.parametrize("path", QUICK_FAMILIES, ids=[p.stem for p in QUICK_FAMILIES])
def test_quick_runs_every_config_end_to_end(path, tmp_path):
    """`--quick` over one config of each family that declares a book result and runs on a CPU
    (`dlrun reproduce --quick` runs them all): it runs end to end at a reduced size (one epoch,
    at most 256 examples, batches of at most 64). One test per config, so that parallel workers
    share them."""
    if not data_is_here(load_config(path)):
        pytest.skip(f"{path.name}: its data is not on this machine")
    result = CliRunner().invoke(app, ["reproduce", str(path), "--quick", "--out", str(tmp_path / "q"),
                                      "--configs", str(CONFIGS)])
    table = pd.read_csv(tmp_path / "q" / "reproduction.csv")
    assert len(table) == 1
    assert (table["verdict"] == "ran").all(), table[table["verdict"] != "ran"][["config", "error"]].to_string()
    assert result.exit_code == 0, result.output
