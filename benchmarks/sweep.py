"""Sweep benchmark: 16 trials (4 learning rates x 4 seeds), vectorised versus one after another.

Both run in this process on the same data, each trial exactly as `dlrun sweep` would run it:
vectorised, the 16 trials are one `core.training.vectorised` group (one compile, one program); sequentially,
each trial is a `core.train.train` run (its own compile and per-epoch checkpoints, as in
`dlrun sweep --no-vectorize`). Neither draws per-trial plots, as a sweep does by default. The two are interleaved (`--rounds`) because these machines drift.

    python benchmarks/sweep.py                       # softmax regression and the MLP, 5 epochs
    python benchmarks/sweep.py --models softmax --epochs 2 --num-train 6000   # a quick look

Prints trials per second for both and their ratio, and writes
benchmarks/results/sweep-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import jax

from dlrun.core.config import load_config
from dlrun.core.data import load_dataset
from dlrun.core.report.progress import make_reporter
from dlrun.core.sweep.groups import train_chunks
from dlrun.core.training.train import train

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"softmax": ROOT / "configs/softmax.yaml", "mlp": ROOT / "configs/mlp.yaml"}
LEARNING_RATES = (0.03, 0.1, 0.2, 0.3)
SEEDS = (0, 1, 2, 3)


def trial_configs(path: Path, epochs: int, num_train: int | None, data_dir: Path | None = None,
                  lrs=LEARNING_RATES, seeds=SEEDS):
    extra = [f"trainer.epochs={epochs}", "trainer.progress=none"]
    if num_train:
        extra.append(f"data.num_train={num_train}")
    if data_dir:
        extra.append(f"data.dir={data_dir}")
    return [load_config(path, [*extra, f"optimizer.lr={lr}", f"seed={s}"]) for lr in lrs for s in seeds]


def run_vectorised(cfgs, root: Path, data) -> float:
    t0 = time.perf_counter()
    outcomes = train_chunks(cfgs, [root / f"v{i:02d}" for i in range(len(cfgs))], data=data)
    assert all(o.status == "done" for o in outcomes), [o.error for o in outcomes]
    return time.perf_counter() - t0


def run_sequential(cfgs, root: Path, data) -> float:
    t0 = time.perf_counter()
    for i, cfg in enumerate(cfgs):
        train(cfg, root / f"s{i:02d}", reporter=make_reporter("none", 0, ""), data=data, plot=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-train", type=int, default=None, help="fewer training images (default: all 60000)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions of both ways")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the Fashion-MNIST files are")
    parser.add_argument("--small", action="store_true", help="2 learning rates x 2 seeds (a smoke test)")
    args = parser.parse_args()

    results = {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
               "device": str(jax.devices()[0].device_kind), "jax": jax.__version__, "date": str(date.today()),
               "epochs": args.epochs, "num_train": args.num_train or 60000,
               "models": {}}
    for name in args.models:
        grid = (LEARNING_RATES[:2], SEEDS[:2]) if args.small else (LEARNING_RATES, SEEDS)
        cfgs = trial_configs(MODELS[name], args.epochs, args.num_train, args.data_dir, *grid)
        # loaded once for both ways; a first short run pays JAX's one-time start-up for both
        data = load_dataset(cfgs[0].data, cfgs[0].seed)
        with tempfile.TemporaryDirectory() as tmp:
            train(cfgs[0].model_copy(update={"trainer": cfgs[0].trainer.model_copy(update={"epochs": 1})}),
                  Path(tmp), reporter=make_reporter("none", 0, ""), data=data, plot=False)
        vec, seq = [], []
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                vec.append(run_vectorised(cfgs, Path(tmp) / "vec", data))
                seq.append(run_sequential(cfgs, Path(tmp) / "seq", data))
        v, s = statistics.median(vec), statistics.median(seq)
        n = len(cfgs)
        results["models"][name] = {"trials": n, "vectorised_s": vec, "sequential_s": seq, "vectorised_trials_per_s": n / v,
                                   "sequential_trials_per_s": n / s, "ratio": s / v}
        print(f"{name:8s} {n} trials x {args.epochs} epochs: vectorised {v:6.1f} s ({n / v:.3f} trials/s), "
              f"sequential {s:6.1f} s ({n / s:.3f} trials/s), ratio {s / v:.2f}x", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sweep-{results['machine']}-{results['date']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
