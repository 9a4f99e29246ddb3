"""Every config's numbers at a small size, to compare two versions of dlrun.

Each config in `configs/` is trained by the command line (`dlrun train`) at a reduced size
(two epochs at most, 1,024 training and 512 validation examples where the data section has those
fields) and its metrics.csv and summary.json are recorded without the timings. Run it on two
checkouts and compare the files:

    python benchmarks/fingerprint.py --out before.json          # on the old checkout
    python benchmarks/fingerprint.py --out after.json           # on the new one
    python benchmarks/fingerprint.py --compare before.json after.json

The same config and seed give the same numbers on the same machine, so any difference is a
change of behaviour (or float rounding from a reordered computation: `--rtol` says how much is
tolerated).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMED = ("seconds", "wall_seconds", "train_seconds", "compile_seconds", "seconds_per_epoch", "jax_version", "device",
         "backend", "examples_per_second", "group_size")


def small_overrides(path: Path) -> list[str]:
    """The --set overrides that make a config small: fewer epochs and examples."""
    from dlrun.core.config import load_config

    cfg = load_config(path)
    sets = [f"trainer.epochs={min(cfg.trainer.epochs, 2)}"] if cfg.experiment.name == "train" else []
    fields = type(cfg.data).model_fields
    if cfg.experiment.name == "train" and cfg.data.name in ("fashion_mnist", "time_machine"):
        if "num_train" in fields:
            sets.append("data.num_train=1024")
        if "num_val" in fields:
            sets.append("data.num_val=512")
        if cfg.data.batch_size > 256:
            sets.append("data.batch_size=256")
    return sets


def record(config: Path, timeout: float) -> dict:
    """The config's metrics rows and summary (timings left out), or why there are none."""
    try:
        sets = small_overrides(config)
    except Exception as err:  # noqa: BLE001 - reported in the record
        return {"error": f"config: {err}"}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-c", "from dlrun.cli.main import main; main()", "train", str(config), "--out", str(run)]
        for s in sets:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": "timeout", "sets": sets}
        out: dict = {"sets": sets, "rc": done.returncode, "seconds": round(time.perf_counter() - t0, 1)}
        if done.returncode:
            out["stderr"] = done.stderr[-500:]
        metrics = run / "metrics.csv"
        if metrics.is_file():
            with metrics.open() as f:
                out["rows"] = [{k: v for k, v in row.items() if k not in TIMED} for row in csv.DictReader(f)]
        summary = run / "summary.json"
        if summary.is_file():
            out["summary"] = {k: v for k, v in json.loads(summary.read_text()).items() if k not in TIMED}
        out["files"] = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and "checkpoints" not in p.parts)
        return out


def close(a, b, rtol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rtol) for x, y in zip(a, b))
    for x, y in ((a, b),):
        try:
            fx, fy = float(x), float(y)
        except (TypeError, ValueError):
            return x == y
        if math.isnan(fx) and math.isnan(fy):
            return True
        return math.isclose(fx, fy, rel_tol=rtol, abs_tol=rtol * 1e-3)
    return False


def compare(before: dict, after: dict, rtol: float, new_files: tuple[str, ...] = ()) -> int:
    """Print each config whose exit code, metrics rows, summary or files differ; `new_files`
    (file names an intended change adds to every run) are left out of the file lists."""
    def clean(record: dict) -> dict:
        record = dict(record)
        if isinstance(record.get("summary"), dict):  # an experiment's nested timings too (covariate/seconds)
            record["summary"] = {k: v for k, v in record["summary"].items() if k.split("/")[-1] not in TIMED}
        if isinstance(record.get("files"), list):
            record["files"] = [f for f in record["files"] if Path(f).name not in new_files]
        return record

    before = {k: clean(v) for k, v in before.items()}
    after = {k: clean(v) for k, v in after.items()}
    bad = 0
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            print(f"{name}: only in {'after' if a is None else 'before'}")
            bad += 1
            continue
        for part in ("rc", "rows", "summary", "files"):
            if not close(a.get(part), b.get(part), rtol):
                bad += 1
                print(f"{name}: {part} differs")
                if part == "summary" and isinstance(a.get(part), dict) and isinstance(b.get(part), dict):
                    sa, sb = a[part], b[part]
                    for k in sorted(sa.keys() | sb.keys()):
                        if not close(sa.get(k), sb.get(k), rtol):
                            print(f"    {k}: {str(sa.get(k))[:80]} -> {str(sb.get(k))[:80]}")
                elif part == "files":
                    print(f"    only before: {sorted(set(a[part] or []) - set(b[part] or []))}; "
                          f"only after: {sorted(set(b[part] or []) - set(a[part] or []))}")
                else:
                    print(f"    {str(a.get(part))[:200]}\n -> {str(b.get(part))[:200]}")
    print(f"{len(before)} configs before, {len(after)} after; {bad} differences")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("fingerprint.json"))
    parser.add_argument("--configs", default="", help="comma-separated config names (default: all)")
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--new-files", default="", help="comma-separated file names an intended change adds")
    args = parser.parse_args()
    if args.compare:
        return compare(*(json.loads(p.read_text()) for p in args.compare), args.rtol,
                       tuple(n for n in args.new_files.split(",") if n))
    names = [n for n in args.configs.split(",") if n]
    configs = sorted(ROOT.glob("configs/*.yaml")) if not names else [ROOT / "configs" / f"{n}.yaml" for n in names]
    results = {}
    for config in configs:
        results[config.stem] = record(config, args.timeout)
        r = results[config.stem]
        print(f"{config.stem}: rc={r.get('rc')} {r.get('seconds', '')}s {r.get('error', '')}", flush=True)
        args.out.write_text(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
