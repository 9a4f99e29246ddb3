"""Training speed: dlrun's per-step and whole-epoch paths against a PyTorch reference.

For each model of `speed_models.MODELS`: the Fashion-MNIST classifiers (softmax regression, MLP
784-256-10, the book's LeNet and BN-LeNet, the CPU-sized ResNet and ViT of configs/resnet_cpu.yaml
and vit_cpu.yaml), the sequence models (the concise GRU language model of configs/gru.yaml on The
Time Machine, the seq2seq and Transformer of configs/seq2seq.yaml and transformer.yaml on
English-French, found through $DLRUN_DATA_DIR), chapter 13's TinySSD and FCN on their generated
sets and style transfer's synthesis (`vision_reference.py`, `style_transfer_reference.py`),
chapter 14's word2vec on the first `--num-sentences` PTB sentences and BERT pretraining, its
epochs of `data.steps_per_epoch` batches (`nlp_reference.py`), chapter 15's sentiment BiRNN and
textCNN, decomposable attention and BERT fine-tuning for inference on their stand-in data
(`nlp_tasks_reference.py`), chapter 16's matrix factorisation, NeuMF, Caser, FM and DeepFM and
chapter 17's GAN and DCGAN on their generated data (`recsys_reference.py`,
`recsys_gan_reference.py`), each at its config's batch size, float32. Every
implementation runs in its own process (so that peak memory is its own), the
implementations taking turns round after round (these machines drift by up to 30% within
minutes). Each process trains one warm-up epoch after compiling, then `--epochs` timed ones.

    python benchmarks/speed.py                           # full data, 3 timed epochs, 2 rounds
    python benchmarks/speed.py --models lenet --rounds 1 # one model
    DLRUN_DATA_DIR=../shared/data python benchmarks/speed.py --models gru_lm,seq2seq,transformer --no-cli
    DLRUN_DATA_DIR=../shared/data python benchmarks/speed.py --models word2vec,bert --no-cli --tag chapter14
    python benchmarks/speed.py --models mf,gan --no-cli --tag chapter16-17
    DLRUN_DATA_DIR=../shared/data python benchmarks/speed.py --models style_transfer,birnn,textcnn,decomposable,\
        bert_nli,neumf,caser,fm,deepfm,dcgan --no-cli --rounds 1 --tag chapters13-17

Reported per model and implementation: seconds per epoch (median over all timed epochs),
compile seconds, examples per second, peak resident memory, the validation accuracy reached
(the same number of epochs for all; for the sequence models the token accuracy, and tokens per
second: the language model's predicted tokens, seq2seq's valid target tokens, as the book
counts them; their epochs are short, so at least 10 are timed; word2vec and BERT have no validation
split: their last epoch's training loss instead), and the fraction of this machine's matmul peak the epoch
reaches (FLOPs of one step from XLA's cost analysis, times the steps; the peak measured here
with a 2048^3 float32 matmul). Also `dlrun --help` start-up time and a one-epoch `dlrun train`'s
wall time and fixed overhead, first run (empty caches) and second run side by side. Writes benchmarks/results/<machine>-<date>.json and .md. PyTorch is optional
(`pip install torch`, CPU build); without it the reference is reported missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from speed_models import MODELS, ROOT, bert_classifier_setup, epoch_examples, load_cfg, run_dlrun_synthesis, torch_runner

IMPLS = ("step", "scan", "torch")
# Targets of the performance issue (2-core CPU): dlrun / PyTorch speed-up per model (1.0x unless named), and more
SPEEDUP_TARGETS = {name: {"softmax": 1.5, "mlp": 1.5}.get(name, 1.0) for name in MODELS}
NO_COMPILE_TARGET = ("sequence", "pretraining", "generated", "synthesis")  # the compile target is for the image models
DLRUN_IMPLS = {"step", "scan"}
QUALITY = ("val_rmse", "val_hit_rate", "val_auc")  # what a model without an accuracy reports of its validation


def impls_of(model: str, impls) -> list[str]:
    """The implementations timed for `model`: style transfer's synthesis is one loop in dlrun."""
    return [i for i in impls if i != "scan" or MODELS[model].kind != "synthesis"]


# ------------------------------------------------------------------------- one worker process


def run_dlrun(cfg, data, loop: str, epochs: int) -> dict:
    """dlrun's training path exactly as `dlrun train` runs it (`core.training.train`), into a
    temporary run directory, checkpointing only at the end; seconds per epoch from its rows."""
    import jax

    from dlrun.core.report.progress import make_reporter
    from dlrun.core.training.setup import build_setup, countable, start_state, train_arrays
    from dlrun.core.training.state import take
    from dlrun.core.training.train import train

    cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(
        update={"loop": loop, "epochs": epochs + 1, "checkpoint_every": 0, "progress": "none"})})
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, Path(tmp) / "run", data=data, plot=False, reporter=make_reporter("none", 0, ""))
    setup = build_setup(countable(cfg), data)  # XLA's convolution: its cost analysis counts the FLOPs
    state, keys = start_state(setup, jax.random.PRNGKey(cfg.seed))
    batch = take(train_arrays(data), jax.numpy.arange(setup.batch_size))
    cost = jax.jit(setup.train_step).lower(state, batch, keys["step"]).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older jax returns one dict per device
    last = result.rows[-1]
    out = {"epoch_seconds": [r["seconds"] for r in result.rows[1:]], "compile_seconds": result.summary["compile_seconds"],
           "flops_per_epoch": float(cost.get("flops", 0.0)) * setup.steps_per_epoch,
           "val_acc": val_accuracy(result.summary), "examples_trained": setup.steps_per_epoch * setup.batch_size, "loop": loop,
           # a GAN reports its two parts' losses, the discriminator's first
           "train_loss": last["train/loss"] if "train/loss" in last else last.get("train/loss_D")}
    if "train/loss_G" in last:
        out["train_loss_G"] = last["train/loss_G"]
    for key in QUALITY:  # a rating model's held-out RMSE (D2L 16.3), a ranker's hit rate and AUC (16.5)
        if key.replace("val_", "val/") in result.summary:
            out[key] = result.summary[key.replace("val_", "val/")]
    return out


def val_accuracy(summary: dict) -> float | None:
    """The validation accuracy: of the classes, of the pixels (a segmentation), or of the
    anchors' classes (a detector: 1 - its class error, D2L 13.7); None without a validation
    split (word2vec, BERT pretraining)."""
    if "val/acc" in summary:
        return summary["val/acc"]
    return 1.0 - summary["val/class_err"] if "val/class_err" in summary else None


def worker(args) -> None:
    short = MODELS[args.model].short
    epochs = max(args.epochs, args.min_short_epochs) if short else args.epochs
    if args.impl == "torch" and args.torch_threads:  # fewer threads than cores: on a shared machine, no thread waits
        import torch  # for a descheduled one

        torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, data = config_and_data(args.model, args, tmp)
        if args.impl == "torch":
            out = torch_runner(args.model)(cfg, data, epochs)
        elif MODELS[args.model].kind == "synthesis":  # D2L 13.12: an epoch is the config's lr period of steps on one image
            out = run_dlrun_synthesis(cfg, epochs)
        else:
            out = run_dlrun(cfg, data, args.impl, epochs)
        epoch_examples(args.model, cfg, data, out)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(out))


def config_and_data(model: str, args, tmp: str) -> tuple:
    """`model`'s config and data set (None for style transfer, whose images its functions read)."""
    from dlrun.core.data import load_dataset

    if model == "bert_nli":  # the fine-tuning run's config and pairs, without the pretraining it follows
        return bert_classifier_setup(ROOT / "configs" / MODELS[model].config, ["trainer.progress=none", *args.set], tmp)
    cfg = load_cfg(model, args)
    return cfg, None if MODELS[model].kind == "synthesis" else load_dataset(cfg.data, cfg.seed)


def matmul_peak() -> None:
    """This machine's float32 matmul rate: the best of 10 timed 2048^3 products."""
    import jax

    n = 2048
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(10))
    print("RESULT " + json.dumps({"gflops": 2 * n**3 / best / 1e9}))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ------------------------------------------------------------------------------ the driver


def _child(argv: list[str], timeout: float = 1800) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).parent)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def cli_timings(args) -> dict:
    """`dlrun --help` start-up (median of 5) and one-epoch `dlrun train configs/mlp.yaml` runs,
    first and second side by side: the first with empty caches (a fresh user cache directory:
    JAX's compilation cache and the decoded data sets), then `--startup-runs - 1` more that find
    them filled (their median is the second run's figure). Each run's fixed overhead is its wall
    time minus its one epoch (imports, data, compiling, evaluation, files)."""
    dlrun = shutil.which("dlrun") or str(Path(sys.executable).parent / "dlrun")
    helps = [_timed(lambda: subprocess.run([dlrun, "--help"], capture_output=True, check=True)) for _ in range(5)]
    overrides = [f"--set={o}" for o in ["trainer.epochs=1", "trainer.progress=none"]]
    if args.data_dir:
        overrides.append(f"--set=data.dir={args.data_dir}")
    if args.num_train:
        overrides.append(f"--set=data.num_train={args.num_train}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("DLRUN_COMPILE_CACHE", "DLRUN_DATA_CACHE")}
        env["XDG_CACHE_HOME"] = f"{tmp}/cache"  # empty: the first run fills it
        for k in range(max(args.startup_runs, 2)):
            t = time.perf_counter()
            subprocess.run([dlrun, "train", str(ROOT / "configs/mlp.yaml"), *overrides, "--out", f"{tmp}/run{k}"],
                           capture_output=True, check=True, env=env)
            wall = time.perf_counter() - t
            summary = json.loads(Path(f"{tmp}/run{k}/summary.json").read_text())
            runs.append({"wall": wall, "overhead": wall - summary["train_seconds"], "compile": summary["compile_seconds"]})
            print(f"dlrun train (1 epoch), {'first' if k == 0 else 'second'} run: {wall:.2f} s", flush=True)
    first, later = runs[0], runs[1:]
    return {"help_seconds": statistics.median(helps),
            "train_wall_seconds": first["wall"], "train_fixed_overhead_seconds": first["overhead"],
            "train_compile_seconds": first["compile"],
            "second_wall_seconds": statistics.median(r["wall"] for r in later),
            "second_fixed_overhead_seconds": statistics.median(r["overhead"] for r in later),
            "second_compile_seconds": statistics.median(r["compile"] for r in later),
            "second_runs": len(later)}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="softmax,mlp,lenet", help="comma-separated: " + ",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per process, after one warm-up epoch")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, taking turns")
    parser.add_argument("--num-train", type=int, default=None, help="fewer training images (default: all 60000)")
    parser.add_argument("--num-val", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the Fashion-MNIST files are")
    parser.add_argument("--num-sentences", type=int, default=4000, help="word2vec: the first N PTB sentences")
    parser.add_argument("--bert-steps", type=int, default=10, help="bert: batches per epoch (its config's steps_per_epoch)")
    parser.add_argument("--torch-threads", type=int, default=None, help="PyTorch's intra-op threads (default: its own)")
    parser.add_argument("--min-short-epochs", type=int, default=10,
                        help="timed epochs at least, for the models whose epochs are short (sequence, generated)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for dlrun's runs (repeatable), e.g. model.conv_impl=cpu")
    parser.add_argument("--tag", default="", help="appended to the result files' names and the title (e.g. chapter14)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--no-cli", action="store_true", help="skip the dlrun start-up timings")
    parser.add_argument("--startup-runs", type=int, default=4,
                        help="one-epoch dlrun train runs: the first with empty caches, the rest warm (at least 2)")
    parser.add_argument("--worker", choices=["train", "peak"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "train":
        return worker(args)
    if args.worker == "peak":
        return matmul_peak()

    import jax

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; expected some of {sorted(MODELS)}")
    impls = [i for i in IMPLS if i != "torch" or torch_available()]
    if "torch" not in impls:
        print("PyTorch reference missing: `pip install torch` (CPU build) to compare against it", flush=True)
    common = ["--epochs", str(args.epochs)] + sum(
        ([flag, str(v)] for flag, v in (("--num-train", args.num_train), ("--num-val", args.num_val), ("--data-dir", args.data_dir),
                                        ("--num-sentences", args.num_sentences), ("--bert-steps", args.bert_steps),
                                        ("--torch-threads", args.torch_threads)) if v),
        [],
    ) + [f"--set={o}" for o in args.set] + ["--min-short-epochs", str(args.min_short_epochs)]
    peak = _child(["--worker", "peak"])["gflops"]
    print(f"matmul peak: {peak:.1f} GFLOP/s (float32, 2048^3)", flush=True)
    runs: dict = {m: {i: [] for i in impls_of(m, impls)} for m in models}
    for r in range(args.rounds):
        for m in models:
            for impl in runs[m]:
                out = _child(["--worker", "train", "--model", m, "--impl", impl, *common])
                runs[m][impl].append(out)
                print(f"round {r + 1}: {m:8s} {impl:6s} {statistics.median(out['epoch_seconds']):.3f} s/epoch", flush=True)

    results = {"machine": machine_name(jax), "date": str(date.today()), "backend": jax.default_backend(),
               "device": str(jax.devices()[0].device_kind), "cpu_count": os.cpu_count(), "platform": platform.platform(),
               "versions": versions(), "epochs": args.epochs, "rounds": args.rounds, "num_train": args.num_train or 60000,
               "batch_size": 256, "matmul_peak_gflops": peak, "models": summarise(runs, peak), "tag": args.tag,
               "command": " ".join(["python", "benchmarks/speed.py", *sys.argv[1:]])}
    if not args.no_cli:
        results["cli"] = cli_timings(args)
    results["targets"] = check_targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "-".join(filter(None, [results["machine"], results["date"], args.tag]))
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    stem.with_suffix(".md").write_text(markdown)
    print("\n" + markdown)
    print(f"written: {stem}.json, {stem}.md")


def machine_name(jax) -> str:
    return f"{jax.default_backend()}-{os.cpu_count()}core-{platform.machine()}"


def versions() -> dict:
    import jax
    import jaxlib
    import optax

    v = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__}
    if torch_available():
        import torch

        v["torch"] = torch.__version__
    return v


def summarise(runs: dict, peak_gflops: float) -> dict:
    table = {}
    for model, by_impl in runs.items():
        table[model] = {}
        for impl, outs in by_impl.items():
            epoch_s = statistics.median([s for o in outs for s in o["epoch_seconds"]])
            row = {"seconds_per_epoch": epoch_s, "epoch_seconds": [o["epoch_seconds"] for o in outs],
                   "compile_seconds": statistics.median(o["compile_seconds"] for o in outs),
                   "examples_per_second": outs[0]["examples"] / epoch_s,
                   "peak_rss_mb": max(o["peak_rss_mb"] for o in outs), "val_acc": outs[0]["val_acc"],
                   "examples_per_epoch": outs[0]["examples"]}
            if outs[0].get("val_acc") is None:  # no validation split: the last epoch's training loss
                row["train_loss"] = outs[0]["train_loss"]
            for k in ("examples_in_set", "vocab", "threads", "train_loss_G", *QUALITY):
                if k in outs[0]:
                    row[k] = outs[0][k]
            if "tokens" in outs[0]:
                row["tokens_per_second"] = outs[0]["tokens"] / epoch_s
            if "flops_per_epoch" in outs[0]:
                row["gflop_per_epoch"] = outs[0]["flops_per_epoch"] / 1e9
                row["fraction_of_peak"] = outs[0]["flops_per_epoch"] / epoch_s / (peak_gflops * 1e9)
            table[model][impl] = row
        if "torch" in by_impl:
            for impl in DLRUN_IMPLS & set(by_impl):
                table[model][impl]["speedup_vs_torch"] = table[model]["torch"]["seconds_per_epoch"] / table[model][impl]["seconds_per_epoch"]
    return table


def check_targets(results: dict) -> list[dict]:
    """The issue's targets, each with the figure measured and whether it is met."""
    checks = []
    for model, rows in results["models"].items():
        best = min(DLRUN_IMPLS & set(rows), key=lambda i: rows[i]["seconds_per_epoch"])
        if "torch" in rows and model in SPEEDUP_TARGETS:
            checks.append({"target": f"{model}: dlrun ({best}) >= {SPEEDUP_TARGETS[model]}x PyTorch per epoch",
                           "measured": rows[best]["speedup_vs_torch"], "met": rows[best]["speedup_vs_torch"] >= SPEEDUP_TARGETS[model]})
        if MODELS[model].kind not in NO_COMPILE_TARGET:
            checks.append({"target": f"{model}: compile <= 2 s ({best})", "measured": rows[best]["compile_seconds"],
                           "met": rows[best]["compile_seconds"] <= 2.0})
        if model == "mlp":
            checks.append({"target": "mlp: >= 70% of the matmul peak", "measured": rows[best]["fraction_of_peak"],
                           "met": rows[best]["fraction_of_peak"] >= 0.7})
            checks.append({"target": "mlp: peak memory <= 1.5 GB", "measured": rows[best]["peak_rss_mb"],
                           "met": rows[best]["peak_rss_mb"] <= 1536})
    if "cli" in results:
        checks.append({"target": "dlrun --help < 0.5 s", "measured": results["cli"]["help_seconds"],
                       "met": results["cli"]["help_seconds"] < 0.5})
        checks.append({"target": "dlrun train mlp, 1 epoch, second run <= 3 s", "measured": results["cli"]["second_wall_seconds"],
                       "met": results["cli"]["second_wall_seconds"] <= 3.0})
    return checks


def pretraining_notes(models: dict) -> list[str]:
    """What an epoch of word2vec and BERT is: their examples are centre words and sentence pairs."""
    notes = []
    for model, rows in models.items():
        r = rows["step"]
        if model == "word2vec" and "examples_in_set" in r:
            notes.append(f"word2vec: {r['examples_in_set']:,} centre words (its examples, each with its contexts and noise "
                         f"words), vocabulary {r['vocab']:,}; an epoch trains {r['examples_per_epoch']:,} of them, the "
                         "whole batches of a shuffled pass.")
        elif model == "bert" and "examples_in_set" in r:
            notes.append(f"bert: {r['examples_in_set']:,} sentence pairs, vocabulary {r['vocab']:,}; an epoch trains "
                         f"{r['examples_per_epoch']:,} of them (its steps of the shuffled stream).")
        elif model == "mf" and "examples_in_set" in r:
            notes.append(f"mf: {r['examples_in_set']:,} training ratings (user, item, rating) of the generated rank-10 set; "
                         f"an epoch trains {r['examples_per_epoch']:,} of them, the whole batches of a shuffled pass, on "
                         "every side; its quality is the held-out RMSE.")
        elif model == "gan" and "examples_in_set" in r:
            notes.append(f"gan: {r['examples_in_set']:,} real examples of the book's Gaussian data; an epoch trains "
                         f"{r['examples_per_epoch']:,} of them, each step one discriminator and one generator update; "
                         "its quality is the last epoch's loss_D and loss_G (ln 2 = 0.693 at the equilibrium).")
    return ["", *notes] if notes else []


def quality_of(r: dict) -> str:
    """A row's quality column: its validation accuracy, else what its model has instead."""
    if r.get("val_acc") is not None:
        return f"{r['val_acc']:.3f}"
    if "val_rmse" in r:
        return f"RMSE {r['val_rmse']:.3f}"
    if "val_hit_rate" in r:
        return f"HR {r['val_hit_rate']:.3f} AUC {r['val_auc']:.3f}"
    if "train_loss_G" in r:
        return f"D {r['train_loss']:.3f} G {r['train_loss_G']:.3f}"
    return f"loss {r['train_loss']:.3f}"


def to_markdown(results: dict) -> str:
    v = results["versions"]
    tag = results.get("tag", "")
    title = f"# Training speed: {results['machine']}, {results['date']}" + (f", {tag.replace('chapter', 'chapter ')}" if tag else "")
    lines = [title, "", f"`{results['command']}`", ""] if results.get("command") else [title, ""]
    lines += [f"{results['device']} ({results['backend']}, {results['cpu_count']} cores), "
             + ", ".join(f"{k} {val}" for k, val in v.items())
             + f". Fashion-MNIST {results['num_train']} training images at each config's batch size (the sequence "
             "models, TinySSD, the FCN, word2vec, BERT, MF and the GAN: their configs' data; their val acc is of tokens, anchors "
             "and pixels; word2vec and BERT have no validation split, so their last epoch's training loss stands there, MF's "
             "held-out RMSE, the GAN's two losses), float32; "
             f"{results['epochs']} timed epochs after a warm-up, x {results['rounds']} processes per implementation, "
             f"taking turns. Matmul peak {results['matmul_peak_gflops']:.1f} GFLOP/s.", "",
             "| model | implementation | s/epoch | compile s | examples/s | peak MB | % of matmul peak | val acc | speed-up vs PyTorch |",
             "|---|---|---|---|---|---|---|---|---|"]
    names = {"step": "dlrun per-step", "scan": "dlrun whole-epoch (scan)", "torch": "PyTorch eager (book style)"}
    for model, rows in results["models"].items():
        for impl, r in rows.items():
            frac = f"{100 * r['fraction_of_peak']:.1f}%" if "fraction_of_peak" in r else "-"
            rate = f"{r['tokens_per_second']:,.0f} tokens" if "tokens_per_second" in r else f"{r['examples_per_second']:,.0f}"
            speed = f"{r['speedup_vs_torch']:.2f}x" if "speedup_vs_torch" in r else "-"
            lines.append(f"| {model} | {names[impl]} | {r['seconds_per_epoch']:.3f} | {r['compile_seconds']:.2f} | "
                         f"{rate} | {r['peak_rss_mb']:.0f} | {frac} | {quality_of(r)} | {speed} |")
    lines += pretraining_notes(results["models"])
    if "cli" in results:
        c = results["cli"]
        lines += ["", f"`dlrun --help`: {c['help_seconds']:.2f} s.", "",
                  "| `dlrun train configs/mlp.yaml`, one epoch | wall s | outside the epoch s | compile s |",
                  "|---|---|---|---|",
                  f"| first run (empty caches) | {c['train_wall_seconds']:.2f} | {c['train_fixed_overhead_seconds']:.2f} | "
                  f"{c['train_compile_seconds']:.2f} |",
                  f"| second run (median of {c['second_runs']}) | {c['second_wall_seconds']:.2f} | "
                  f"{c['second_fixed_overhead_seconds']:.2f} | {c['second_compile_seconds']:.2f} |"]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']:.3g} | {'yes' if t['met'] else 'no'} |" for t in results["targets"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
