"""`dlrun reproduce`: run the configs of book sections and put our numbers next to the book's.

A config that reproduces a result declares it in its `book:` section (the section, the summary
metric, the range the book's editions report, and whether higher is better). This module picks
the configs of the requested sections, chapters or files, runs each into a run directory of the
report (`dlrun.experiments.run_reproduction`: the one training loop, or the config's
experiment), and writes `reproduction.csv`, `reproduction.md` and a self-contained
`reproduction.html` (plots inlined, nothing fetched). Running them in parallel uses the sweep's
executors (worker processes or Ray).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from .. import disk
from ..config import Config, ConfigError, header_comment, load_config

VERDICTS = ("within", "better", "short")
# --quick: every config at a reduced size, only to prove that it runs end to end
QUICK_EPOCHS = 1
QUICK_TRAIN = 256
QUICK_VAL = 128
QUICK_BATCH = 64


class Entry(NamedTuple):
    """One selected config and what the book reported for it."""

    path: Path
    name: str  # the config's file stem: its run directory's name
    section: str
    what: str  # the header comment's first line
    metric: str
    reported: tuple[float, float]
    better: str  # "higher" or "lower"


def verdict(value: float | None, reported: Sequence[float], better: str) -> str:
    """`within` the book's range, `better` than all of it, or `short` of it; `failed` without a
    finite value."""
    if value is None or not math.isfinite(value):
        return "failed"
    low, high = reported
    if low <= value <= high:
        return "within"
    above = value > high
    return "better" if above == (better == "higher") else "short"


def _section_key(section: str) -> tuple[int, ...]:
    return tuple(int(p) for p in section.split("."))


def matches(section: str, target: str) -> bool:
    """`4` selects 4.x.y, `4.6` selects 4.6 and 4.6.x; never 4.60."""
    return section == target or section.startswith(target + ".")


def entry_for(path: Path, cfg: Config) -> Entry | None:
    if cfg.book is None:
        return None
    lines = header_comment(path)
    return Entry(path, path.stem, cfg.book.section, lines[0] if lines else "", cfg.book.metric,
                 tuple(cfg.book.reported), cfg.book.better)


def select(configs: Path, targets: Sequence[str]) -> list[Entry]:
    """The configs of `targets` (sections like `4.6`, chapters like `4`, or config files); all
    configs that declare a book result when there are none. Ordered by section, then name.

    Raises:
        ConfigError: a target that is neither a config file nor a section any config declares,
            or a config file without a `book:` section.
    """
    catalogue: list[Entry] = []
    for path in sorted(p for p in configs.rglob("*.yaml") if p.parent.name != "sweeps"):
        entry = entry_for(path, load_config(path))
        if entry is not None:
            catalogue.append(entry)
    chosen: dict[Path, Entry] = {}
    for target in targets:
        as_path = Path(target)
        if as_path.suffix in (".yaml", ".yml") or as_path.is_file():
            if not as_path.is_file():
                raise ConfigError(f"{target}: no such config file")
            entry = entry_for(as_path, load_config(as_path))
            if entry is None:
                raise ConfigError(f"{target}: declares no book result (a `book:` section with section, metric, reported)")
            chosen[as_path.resolve()] = entry
            continue
        found = [e for e in catalogue if matches(e.section, target)]
        if not found:
            known = sorted({e.section.split(".")[0] for e in catalogue}, key=int)
            raise ConfigError(f"{target}: no config reproduces section or chapter {target}; chapters with configs: "
                              f"{', '.join(known)}")
        chosen |= {e.path.resolve(): e for e in found}
    entries = list(chosen.values()) if targets else catalogue
    return sorted(entries, key=lambda e: (_section_key(e.section), e.name))


def quick_overrides(cfg: Config) -> list[str]:
    """A reduced size for `--quick`: one epoch, and fewer examples where the data section counts
    them (`num_train`, `num_val`, or the keys and most values of its `quick` table)."""
    overrides = [f"trainer.epochs={min(cfg.trainer.epochs, QUICK_EPOCHS)}"]
    data = cfg.data
    fields = type(data).model_fields
    for key, most in (("num_train", QUICK_TRAIN), ("num_val", QUICK_VAL)):
        if key in fields and (getattr(data, key) is None or getattr(data, key) > most):
            overrides.append(f"data.{key}={most}")
    if "num_train" in fields and data.batch_size > QUICK_BATCH:
        overrides.append(f"data.batch_size={QUICK_BATCH}")
    for key, most in getattr(type(data), "quick", {}).items():  # a family's own counts (sentences, paragraphs, steps)
        if getattr(data, key) is None or getattr(data, key) > most:
            overrides.append(f"data.{key}={most}")
    return overrides


def finished(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's result, read back from its directory (for `--resume`); None for a run
    that did not finish, or whose reproduce.json is damaged (it is then run again)."""
    from .status import read_json

    result = read_json(run_dir / "reproduce.json")
    if result.get("status") != "done" or not isinstance(result.get("summary"), dict):
        return None
    return result


def unfinished(run_dir: Path) -> bool:
    """Whether `run_dir` holds an unfinished run (a report stopped or killed while it trained)."""
    return run_dir.is_dir() and any(run_dir.iterdir())


REPORT_MARK = "reproduce-report.json"  # what makes a directory a report that `--resume` continues


def mark_report(report: Path, quick: bool, targets: Sequence[str], configs: Path) -> None:
    """Say, before anything else is written, that `report` is a reproduction report, and of what."""
    if not (report / REPORT_MARK).is_file():
        disk.write_json(report / REPORT_MARK, {"kind": "dlrun reproduce", "quick": quick, "targets": list(targets),
                                               "configs": str(Path(configs).resolve())})


def report_targets(report: Path, targets: Sequence[str] | None, quick: bool,
                   configs: Path | None) -> tuple[list[str], bool, Path | None]:
    """What a resumed report runs: the targets, size and configs it was made with, unless given anew."""
    from .status import read_json

    mark = read_json(report / REPORT_MARK)
    saved = mark.get("targets")
    saved = [str(t) for t in saved] if isinstance(saved, list) else []
    saved_configs = Path(mark["configs"]) if isinstance(mark.get("configs"), str) else None
    return (list(targets) if targets else saved), quick or mark.get("quick") is True, configs or saved_configs


def is_report(report: Path) -> bool:
    """A directory `dlrun reproduce` made: its mark, or (a report from before the mark) its table."""
    return (report / REPORT_MARK).is_file() or (report / "reproduction.csv").is_file()


def record(run_dir: Path, result: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    disk.write_json(run_dir / "reproduce.json", result)


def row(entry: Entry, result: dict[str, Any], quick: bool) -> dict[str, Any]:
    value = result["summary"].get(entry.metric)
    value = float(value) if isinstance(value, (int, float)) else None
    low, high = entry.reported
    return {
        "section": entry.section,
        "config": entry.name,
        "what": entry.what,
        "metric": entry.metric,
        "better": entry.better,
        "book_low": low,
        "book_high": high,
        "ours": value,
        "verdict": ("ran" if result["status"] == "done" else "failed") if quick else
                   (verdict(value, entry.reported, entry.better) if result["status"] == "done" else "failed"),
        "seconds": round(result["seconds"], 1),
        "error": result.get("error", ""),
    }


def headline(rows: Sequence[dict[str, Any]], quick: bool) -> str:
    if quick:
        ran = sum(r["verdict"] == "ran" for r in rows)
        return f"{ran} of {len(rows)} configs ran end to end at the reduced size (--quick: no verdicts)"
    good = sum(r["verdict"] in ("within", "better") for r in rows)
    return f"{good} of {len(rows)} at or above the book"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return "" if v is None else str(v)


def markdown(rows: Sequence[dict[str, Any]], quick: bool, title: str) -> str:
    lines = [f"# {title}", "", headline(rows, quick), "",
             "| section | config | metric | book | ours | verdict | seconds |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        book = f"{_range(r)} ({r['better']} is better)"
        lines.append(f"| {r['section']} | `{r['config']}` | {r['metric']} | {book} | {_fmt(r['ours'])} | "
                     f"{r['verdict']} | {r['seconds']:.1f} |")
    failed = [r for r in rows if r["verdict"] == "failed"]
    if failed:
        lines += ["", "Failed:", ""] + [f"- `{r['config']}`: {' '.join(r['error'].split())}" for r in failed]
    return "\n".join(lines) + "\n"


def _range(r: dict[str, Any]) -> str:
    low, high = _fmt(r["book_low"]), _fmt(r["book_high"])
    return low if low == high else f"{low}-{high}"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def html_page(rows: Sequence[dict[str, Any]], run_dirs: dict[str, Path], quick: bool, title: str) -> str:
    """One self-contained page: the table, then each run's pictures inlined as data URIs."""
    esc = html.escape
    head = ("<tr>" + "".join(f"<th>{h}</th>" for h in ("section", "config", "what", "metric", "book", "ours", "verdict",
                                                          "seconds")) + "</tr>")
    body = []
    for r in rows:
        book = f"{_range(r)} ({r['better']} is better)"
        body.append(f'<tr class="{esc(r["verdict"])}"><td>{esc(r["section"])}</td><td><a href="#{esc(r["config"])}">'
                    f'{esc(r["config"])}</a></td><td>{esc(r["what"])}</td><td>{esc(r["metric"])}</td><td>{esc(book)}</td>'
                    f'<td>{esc(_fmt(r["ours"]))}</td><td>{esc(r["verdict"])}</td><td>{r["seconds"]:.1f}</td></tr>')
    runs = []
    for r in rows:
        run_dir = run_dirs[r["config"]]
        images = "".join(_image(p) for p in sorted(run_dir.glob("*.png")))
        error = f"<pre>{esc(r['error'])}</pre>" if r["error"] else ""
        runs.append(f'<section id="{esc(r["config"])}"><h2>{esc(r["section"])} {esc(r["config"])}</h2>'
                    f"<p>{esc(r['what'])}</p>{error}{images}</section>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:90%}.short,.failed{background:#fdd}"
             ".within{background:#dfd}.better{background:#cfe}img{max-width:48%;margin:4px;vertical-align:top}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body><h1>{esc(title)}</h1><p id='headline'>{esc(headline(rows, quick))}</p>"
            f"<table id='results'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>{''.join(runs)}"
            "</body></html>\n")


def write_report(out: Path, rows: list[dict[str, Any]], run_dirs: dict[str, Path], quick: bool) -> None:
    import pandas as pd

    title = "dlrun reproduce" + (" --quick" if quick else "")
    disk.write_atomic(out / "reproduction.csv", pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    disk.write_atomic(out / "reproduction.md", markdown(rows, quick, title))
    disk.write_atomic(out / "reproduction.html", html_page(rows, run_dirs, quick, title))
