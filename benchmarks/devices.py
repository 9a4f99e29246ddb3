"""Data-parallel throughput against the number of devices (D2L 12.6).

Trains a config on 1, 2, ... devices (`trainer.devices`), each in its own process, with the
batch per device fixed (the book: 256 on one GPU, 512 on two), and prints seconds per epoch,
examples per second and the speed-up over one device, round after round (these machines drift).
On a CPU the devices are virtual (`--xla_force_host_platform_device_count`): they share the same
cores, so this measures the overhead of sharding rather than a speed-up; on a GPU host the
devices are the GPUs.

    python benchmarks/devices.py                                    # resnet_devices.yaml, small data
    python benchmarks/devices.py --devices 1,2,4 --num-train 60000  # on a multi-GPU host
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One run on `args.count` devices; prints RESULT {json}."""
    from dlrun.core.config import load_config
    from dlrun.core.training.train import train

    overrides = [f"trainer.devices={args.count}", f"data.batch_size={args.per_device_batch * args.count}",
                 f"trainer.epochs={args.epochs + 1}", "trainer.progress=none", "trainer.checkpoint_every=0",
                 *args.set]
    if args.num_train:
        overrides.append(f"data.num_train={args.num_train}")
    cfg = load_config(ROOT / "configs" / args.config, overrides)
    import tempfile

    with tempfile.TemporaryDirectory() as run_dir:
        result = train(cfg, run_dir, plot=False)
    seconds = statistics.median(r["seconds"] for r in result.rows[1:])  # the first epoch warms up
    examples = result.setup.steps_per_epoch * cfg.data.batch_size
    print("RESULT " + json.dumps({"devices": args.count, "batch": cfg.data.batch_size, "seconds_per_epoch": seconds,
                                  "examples_per_second": examples / seconds, "compile_seconds": result.summary["compile_seconds"],
                                  "val_acc": result.summary.get("val/acc")}))


def child(args, count: int) -> dict:
    env = dict(os.environ)
    if "cuda" not in args.backend and "tpu" not in args.backend:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
    argv = [sys.executable, __file__, "--worker", "--count", str(count), "--config", args.config, "--epochs",
            str(args.epochs), "--per-device-batch", str(args.per_device_batch)]
    if args.num_train:
        argv += ["--num-train", str(args.num_train)]
    for item in args.set:
        argv += ["--set", item]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{count} devices failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="resnet_devices.yaml", help="a config under configs/")
    parser.add_argument("--devices", default="1,2", help="comma-separated device counts")
    parser.add_argument("--per-device-batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--num-train", type=int, default=2048, help="training images (0: all 60000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="a config override for every run, KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    import jax

    args.backend = jax.default_backend()
    counts = [int(c) for c in args.devices.split(",")]
    runs: dict[int, list[dict]] = {c: [] for c in counts}
    for _ in range(args.rounds):
        for c in counts:  # the device counts take turns
            runs[c].append(child(args, c))
    base = statistics.median(r["examples_per_second"] for r in runs[counts[0]])
    print(f"{args.config} on {args.backend}, {args.per_device_batch} examples per device per batch, "
          f"median of {args.rounds} rounds")
    print(f"{'devices':>7} {'batch':>6} {'s/epoch':>9} {'examples/s':>11} {'speed-up':>9}")
    for c in counts:
        eps = statistics.median(r["examples_per_second"] for r in runs[c])
        spe = statistics.median(r["seconds_per_epoch"] for r in runs[c])
        print(f"{c:>7} {runs[c][0]['batch']:>6} {spe:>9.3f} {eps:>11.1f} {eps / base:>8.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "backend": args.backend, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
