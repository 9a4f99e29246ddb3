"""The GPU check: every book-sized config trains for a few steps, then dlrun against PyTorch.

Each config written for a GPU (alexnet, vgg, nin, googlenet, resnet, densenet, vit, transformer,
dcgan, gan_gaussian, the recommenders' `_lowrank` / `_generated` twins, and chapter 13's TinySSD
and FCN at the book's sizes on their generated sets) is built as `dlrun
train` builds it (`core.training.setup`) and its per-step program (`make_batch_fn`, the state
donated) trains `--steps` steps on batches in the config's own order. Reported per config: the
seconds of `start_state` (compiling and running the initialisation) and of lowering and compiling
the step, steps/s and examples/s after the warm-up steps, the loss of every step (it must fall:
the mean of the last fifth below that of the first fifth), the compilations during the timed steps
(`CompileCounter`; there must be none), the step program's peak memory (XLA's memory analysis)
and the device's high-water mark (`memory_stats`, n/a on a CPU).
Then ResNet-18 (configs/resnet.yaml) and the Transformer (configs/transformer.yaml): examples/s
of dlrun and of the same network in PyTorch (`gpu_torch.py`) on the same device, float32 and
bfloat16. The data are generated (`gpu_data.py`), never downloaded: the device has none.

    python benchmarks/gpu_check.py                     # on the GPU; no config starts after 7 minutes
    python benchmarks/gpu_check.py --smoke --out /tmp/g  # the same code at tiny sizes, on a CPU (CI)
    python benchmarks/gpu_check.py --configs resnet,vit --compare ""

A config that fails is recorded with its error and the others go on; `--budget-seconds` is
checked before each config and each comparison, and what it leaves out is reported "skipped
(budget)". Exit status 0 when everything ran and passed, else 1. Writes gpu_check.md and
gpu_check.json to `--out` (default benchmarks/results/gpu_check-<machine>-<date>/) after every
row, so that a run cut short leaves what it measured.

The device machine has JAX with CUDA and PyTorch, not the rest of dlrun's dependencies. Build a
wheelhouse here, for the device's Python (`python -c "import sys; print(sys.version)"` there):

    .venv/bin/pip wheel --no-deps --no-build-isolation -w wheels .
    .venv/bin/pip download -d wheels --only-binary=:all: --python-version 3.11 \\
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 optax pyyaml typer pydantic rich pandas matplotlib
    rm -f wheels/jax-* wheels/jaxlib-* wheels/numpy-*   # the device's own stay

and carry wheels/ there; `--wheels wheels` installs dlrun from it (`pip install --no-index
--find-links wheels dlrun`, then the dlrun wheel again, afresh) before anything is imported. A
missing module is named, not a traceback; the report says whether the dlrun it checked has this
checkout's files (a wheel built before the last change has not).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_env, gpu_data, gpu_torch, gpu_report, speed
FMNIST = ["data.dir={fashion_mnist}"]
SMALL_CNN = ["data.resize=null", "data.batch_size=16", "model.conv_impl=xla"]
LOWRANK = ["data.lowrank.num_users=60", "data.lowrank.num_items=80"]
# name: (config, overrides at the config's own size, further overrides for --smoke). At the tiny sizes, NiN and NeuMF
# sit on their plateaus (ln 10, ln 2) for 20 steps; NiN without dropout and NeuMF at lr 0.05 leave them.
CHECKS: dict[str, tuple[str, list[str], list[str]]] = {
    "alexnet": ("alexnet.yaml", FMNIST, [*SMALL_CNN, "model.width=0.0625", "model.hidden=32", "model.stem_kernel=3",
                                         "model.stem_stride=1"]),
    "vgg": ("vgg.yaml", FMNIST, [*SMALL_CNN, "model.blocks=[[1, 8], [1, 8], [1, 16]]", "model.hidden=32"]),
    "nin": ("nin.yaml", FMNIST, [*SMALL_CNN, "model.width=0.0625", "model.stem_kernel=3", "model.stem_stride=1",
                                 "model.dropout=0"]),
    "googlenet": ("googlenet.yaml", FMNIST, [*SMALL_CNN, "model.width=0.0625", "model.stem=small_pooled"]),
    "resnet": ("resnet.yaml", FMNIST, ["data.resize=32", "data.batch_size=16", "model.conv_impl=xla",
                                       "model.stages=[[8, 1], [16, 1]]"]),
    "densenet": ("densenet.yaml", FMNIST, [*SMALL_CNN, "model.stem_channels=8", "model.growth_rate=4", "model.blocks=[2, 2]",
                                           "model.stem=small_pooled"]),
    "vit": ("vit.yaml", FMNIST, ["data.resize=null", "data.batch_size=16", "model.patch=7", "model.hidden=16",
                                 "model.mlp_hidden=32", "model.heads=2", "model.blocks=1"]),
    "transformer": ("transformer.yaml", ["data.file={pairs}"], ["data.num_train=64", "data.num_val=16", "data.batch_size=16",
                                                                "model.hidden=16", "model.ffn_hidden=16", "model.heads=2",
                                                                "model.blocks=1"]),
    "dcgan": ("dcgan.yaml", ["data.dir={sprites}"], ["data.size=16", "data.batch_size=16", "model.latent_dim=8",
                                                     "model.generator_channels=4", "model.discriminator_channels=4",
                                                     "model.conv_impl=xla"]),
    "gan_gaussian": ("gan_gaussian.yaml", [], []),
    "mf_lowrank": ("mf_lowrank.yaml", [], [*LOWRANK, "data.batch_size=64"]),
    "autorec_lowrank": ("autorec_lowrank.yaml", [], [*LOWRANK, "data.batch_size=16", "model.hidden=16"]),
    "neumf_lowrank": ("neumf_lowrank.yaml", [], [*LOWRANK, "data.batch_size=64", "optimizer.lr=0.05"]),
    "caser_lowrank": ("caser_lowrank.yaml", [], [*LOWRANK, "data.batch_size=64"]),
    "fm_generated": ("fm_generated.yaml", [], ["data.num_train=512", "data.num_val=128", "data.batch_size=64"]),
    "deepfm_generated": ("deepfm_generated.yaml", [], ["data.num_train=512", "data.num_val=128", "data.batch_size=64"]),
    # chapter 13: the book's networks and sizes on the generated sets in the real formats (the device has no data)
    "banana_ssd": ("banana_ssd.yaml", ["data.source=generated", "data.num_train=256", "data.num_val=32"],
                   ["data.size=64", "data.batch_size=8", "data.num_train=32", "data.num_val=8", "model.base_widths=[4, 8, 8]",
                    "model.widths=[8, 8, 8]"]),
    "fcn_voc": ("fcn_voc.yaml", ["data.source=generated", "data.generated.num_classes=21", "data.generated.num_train=96",
                                 "data.generated.num_val=16", "data.generated.min_size=[320, 480]",
                                 "data.generated.max_size=[352, 512]"],
                ["data.crop=[64, 64]", "data.batch_size=4", "data.generated.min_size=[64, 64]", "data.generated.max_size=[72, 72]",
                 "data.generated.num_train=16", "data.generated.num_val=4", "model.stages=[[8, 1], [8, 1], [8, 1], [8, 1]]"]),
}
COMPARISONS = ("resnet", "transformer")  # configs timed against PyTorch, each in float32 and bfloat16
PRECISIONS = ("f32", "bf16")
NO_TORCH = "skipped (no PyTorch)"  # a comparison without PyTorch: dlrun's figures alone, not a failure
PASSING = ("ok", NO_TORCH)


# ------------------------------------------------------------------------------ measuring


class CompileCounter:
    """Counts XLA compilations while it is open (`jax.monitoring`'s backend-compile events): a
    step that traces and compiles again for new shapes or types adds one per compilation."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __enter__(self) -> CompileCounter:
        import jax.monitoring

        self.count = 0
        self._listener = lambda name, seconds, **kw: self._heard(name)
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def _heard(self, name: str) -> None:
        self.count += name == self.EVENT

    def __exit__(self, *exc) -> None:
        import jax.monitoring

        jax.monitoring.unregister_event_duration_listener(self._listener)


def timed_steps(setup, data, steps: int, warmup: int) -> dict:
    """`steps` steps of `setup`'s per-step program on `data`'s training split, as
    `core.training.program` runs them; the figures of the steps after `warmup`."""
    import jax
    import jax.numpy as jnp

    from dlrun.core.training.setup import start_state, train_arrays
    from dlrun.core.training.steps import make_batch_fn

    t0 = time.perf_counter()
    state, keys = start_state(setup, jax.random.PRNGKey(setup.cfg.seed))
    jax.block_until_ready(state)
    init_seconds = time.perf_counter() - t0
    arrays = train_arrays(data)
    order_fn = jax.jit(setup.order)
    epochs = -(-steps // setup.steps_per_epoch)
    order = jnp.concatenate([order_fn(keys["order"], e) for e in range(epochs)])[:steps]
    step = jax.jit(make_batch_fn(setup.train_step), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, arrays, order, jnp.int32(0), keys["step"]).compile()  # the call below reuses it
    compile_seconds = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    metrics = []
    for i in range(warmup):
        state, m = step(state, arrays, order, jnp.int32(i), keys["step"])
        metrics.append(m)
    jax.block_until_ready((state, metrics))
    with CompileCounter() as compiles:
        t1 = time.perf_counter()
        for i in range(warmup, steps):
            state, m = step(state, arrays, order, jnp.int32(i), keys["step"])
            metrics.append(m)
        jax.block_until_ready((state, metrics))
        seconds = time.perf_counter() - t1
    metrics = jax.device_get(metrics)
    name = "loss" if "loss" in metrics[0] else sorted(k for k in metrics[0] if k.startswith("loss"))[0]  # a GAN: loss_D
    losses = [float(m[name]) for m in metrics]
    stats = jax.devices()[0].memory_stats() or {}
    return {"steps": steps, "warmup": warmup, "batch_size": setup.batch_size, "init_seconds": init_seconds,
            "compile_seconds": compile_seconds,
            "steps_per_second": (steps - warmup) / seconds, "examples_per_second": (steps - warmup) * setup.batch_size / seconds,
            "loss_metric": name, "losses": losses, "loss_fell": loss_fell(losses),
            "finite": all(bool(m["finite"]) for m in metrics), "recompiles": compiles.count,
            "params": sum(a.size for a in jax.tree_util.tree_leaves(state.params)),
            "program_peak_mb": getattr(memory, "peak_memory_in_bytes", 0) / 2**20 if memory is not None else None,
            "device_peak_mb": stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None}


def loss_fell(losses: list[float]) -> bool:
    """The mean of the last fifth of the steps (at least one) is below that of the first fifth."""
    k = max(1, len(losses) // 5)
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


def verdict(row: dict) -> dict:
    """`row` with its status: ok, or FAIL and why."""
    problems = [why for bad, why in ((not row["finite"], "a loss or gradient not finite"),
                                     (not row["loss_fell"], "the loss did not fall"),
                                     (row["recompiles"], f"{row['recompiles']} compilations during the timed steps")) if bad]
    return row | {"status": "FAIL" if problems else "ok", "error": "; ".join(problems) or None}


def run_within(budget_seconds: float, start: float, jobs: list[tuple[str, Callable[[], dict]]], rows: dict[str, dict],
               after: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.perf_counter) -> dict[str, dict]:
    """Each job's row into `rows`, in turn, while `clock() - start` is within the budget (`after`
    runs after each); a job that raises gets its error and the others go on; one never started
    is "skipped (budget)"."""
    for name, job in jobs:
        if clock() - start > budget_seconds:
            rows[name] = {"status": "skipped (budget)", "error": None}
        else:
            try:
                rows[name] = job()
            except Exception as err:  # noqa: BLE001 - recorded, and the next config runs
                rows[name] = {"status": "error", "error": f"{type(err).__name__}: {err}"[:2000],
                              "traceback": traceback.format_exc()[-4000:]}
            gc.collect()  # the previous config's device buffers go before the next one allocates
        print(f"{name:18s} {rows[name]['status']:17s} {rows[name]['error'] or ''}"[:300], flush=True)
        after()
    return rows


# ------------------------------------------------------------------------------ what is run


def load(name: str, smoke: bool, generated: dict[str, Path]):
    from dlrun.core.config import load_config

    config, overrides, small = CHECKS[name]
    overrides = [o.format(**generated) for o in overrides + (small if smoke else [])]
    return load_config(ROOT / "configs" / config, ["trainer.progress=none", *overrides])


def check_config(name: str, smoke: bool, generated: dict[str, Path], steps: int, warmup: int) -> dict:
    from dlrun.core.data import load_dataset
    from dlrun.core.training.setup import build_setup

    cfg = load(name, smoke, generated)
    data = load_dataset(cfg.data, cfg.seed)
    return verdict({"config": CHECKS[name][0]} | timed_steps(build_setup(cfg, data), data, steps, warmup))


def bfloat16(model):
    """`model` computing in bfloat16: params, model state and floating inputs cast on the way in
    (the params stay float32 in the state, as under PyTorch's autocast, so gradients and the
    update are float32); outputs back to float32 and the model state to its own dtypes."""
    import jax
    import jax.numpy as jnp

    def low(tree):
        return jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    def apply(params, model_state, x, *, train=False, key=None):
        out, new_state = model.apply(low(params), low(model_state), low(x), train=train, key=key)
        out = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, out)
        return out, jax.tree_util.tree_map(lambda new, old: new.astype(old.dtype), new_state, model_state)

    return model._replace(apply=apply)


def compare(name: str, precision: str, smoke: bool, generated: dict[str, Path], steps: int, warmup: int,
            checked: dict | None = None) -> dict:
    """dlrun and PyTorch training `name`'s network on the same arrays, `steps` steps each. In
    float32, dlrun's figures are those of the config's own check (`checked`) when it ran: the
    same program, so it is not compiled twice."""
    from dlrun.core.data import load_dataset
    from dlrun.core.training.setup import build_setup
    from dlrun.core.training.steps import make_train_step

    cfg = load(name, smoke, generated)
    data = load_dataset(cfg.data, cfg.seed)
    if precision == "f32" and checked and "steps" in checked:
        ours = checked
    else:
        setup = build_setup(cfg, data)
        if precision == "bf16":
            partial = data.sampling.keeps_partial_batch(data.num_train, setup.batch_size)
            setup = setup._replace(train_step=make_train_step(bfloat16(setup.model), setup.loss, setup.optimizer,
                                                              cfg.loss.l2_penalty, partial_batches=partial))
        ours = verdict(timed_steps(setup, data, steps, warmup))
    row = {"config": CHECKS[name][0], "precision": precision, "dlrun": ours}
    bad = [f"dlrun: {ours['error']}"] if ours["status"] != "ok" else []
    if importlib.util.find_spec("torch") is None:
        return row | {"torch": None, "status": "FAIL" if bad else NO_TORCH, "error": "; ".join(bad) or None}
    import gpu_torch

    row["torch"] = gpu_torch.train(name, cfg, data, ours["steps"], ours["warmup"], bf16=precision == "bf16")
    row["dlrun_over_torch"] = ours["examples_per_second"] / row["torch"]["examples_per_second"]
    bad += [] if gpu_torch.finite(row["torch"]["losses"]) else ["PyTorch: a loss not finite"]
    return row | {"status": "FAIL" if bad else "ok", "error": "; ".join(bad) or None}


# ------------------------------------------------------------------------------ the driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few steps (CI, on a CPU)")
    parser.add_argument("--configs", default=",".join(CHECKS), help="comma-separated, of: " + ",".join(CHECKS))
    parser.add_argument("--compare", default=",".join(COMPARISONS), help="configs timed against PyTorch ('' for none)")
    parser.add_argument("--steps", type=int, default=None, help="steps per config and comparison (default 100; --smoke: 20)")
    parser.add_argument("--budget-seconds", type=float, default=420.0, help="no config or comparison starts after this")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu_check-<machine>-<date>/")
    parser.add_argument("--wheels", type=Path, default=None, help="on a device machine: install dlrun from this wheelhouse first")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    compared = [c for c in args.compare.split(",") if c]
    if unknown := sorted(set(configs) - set(CHECKS)) + sorted(set(compared) - set(COMPARISONS)):
        parser.error(f"unknown {unknown}; --configs takes {', '.join(CHECKS)}; --compare {', '.join(COMPARISONS)}")
    # 100 steps cost the GPU seconds; in 30, NeuMF's loss was still ln 2 to 1e-5 (it falls clearly by step 80)
    steps = args.steps or (20 if args.smoke else 100)
    if steps < 2:
        parser.error("--steps: at least 2 (a warm-up step, then the timed ones)")
    warmup = min(5, max(1, steps // 10))
    os.environ.setdefault("DLRUN_OFFLINE", "1")  # generated data only: a missing file is an error, not a download
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")  # the other half for PyTorch on the same GPU
    if args.smoke and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        # the smoke run checks the code path, not speed: LLVM's optimisations would take most of its time
        # (googlenet's initialisation program alone, 50 s at -O2 on a 2-core CPU)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    import gpu_env

    gpu_env.require(args.wheels)

    import gpu_data
    import jax
    from speed import machine_name, versions

    start = time.perf_counter()
    report = {"machine": machine_name(jax), "date": str(date.today()), "smoke": args.smoke, "versions": versions(),
              "dlrun": gpu_env.dlrun_source(), "device": gpu_env.environment(), "budget_seconds": args.budget_seconds,
              "configs": {}, "comparisons": {}, "total_seconds": 0.0, "finished": False, "passed": False}
    stem = f"gpu_check-{'smoke-' if args.smoke else ''}{report['machine']}-{report['date']}"
    out = args.out or ROOT / "benchmarks/results" / stem

    def save(final: bool = False) -> None:  # after every row, so that a run cut short still leaves its report
        rows = [*report["configs"].values(), *report["comparisons"].values()]
        report.update(total_seconds=time.perf_counter() - start, finished=final,
                      passed=final and all(r["status"] in PASSING for r in rows))
        write(out, report, show=final)

    with tempfile.TemporaryDirectory(prefix="gpu_check-data-") as tmp:
        generated = gpu_data.generate(Path(tmp), args.smoke)
        run_within(args.budget_seconds, start, [
            (name, lambda name=name: check_config(name, args.smoke, generated, steps, warmup)) for name in configs],
            report["configs"], save)
        run_within(args.budget_seconds, start, [
            (f"{name} {p}", lambda name=name, p=p: compare(name, p, args.smoke, generated, steps, warmup,
                                                           report["configs"].get(name)))
            for name in compared for p in PRECISIONS], report["comparisons"], save)
    save(final=True)
    return 0 if report["passed"] else 1


def write(out: Path, report: dict, show: bool = True) -> None:
    from gpu_report import to_markdown

    from dlrun.core.disk import write_atomic, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "gpu_check.json", report)
    markdown = to_markdown(report)
    write_atomic(out / "gpu_check.md", markdown)
    if show:
        print("\n" + markdown + f"\nwritten: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
