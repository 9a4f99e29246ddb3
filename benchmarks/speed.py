"""Training speed: dlrun's per-step and whole-epoch paths against a PyTorch reference.

For each model (softmax regression, MLP 784-256-10, the book's LeNet and BN-LeNet, the CPU-sized
ResNet of configs/resnet_cpu.yaml, the CPU-sized ViT of configs/vit_cpu.yaml) on Fashion-MNIST,
and the sequence models (the concise GRU language model of configs/gru.yaml on The Time
Machine, the seq2seq and Transformer of configs/seq2seq.yaml and transformer.yaml on
English-French, found through $DLRUN_DATA_DIR; chapter 13's TinySSD and FCN of configs/tiny_ssd_cpu.yaml
and fcn_cpu.yaml on their generated sets, against `vision_reference.py`; chapter 14's skip-gram word2vec of
configs/word2vec.yaml on the first `--num-sentences` PTB sentences and BERT pretraining of
configs/bert_pretrain_ptb.yaml, its epochs of `data.steps_per_epoch` batches, against `nlp_reference.py`;
chapter 16's matrix factorisation of configs/mf_lowrank.yaml and chapter 17's GAN of configs/gan_gaussian.yaml
on their generated sets, against `recsys_gan_reference.py`, at least 10 timed epochs of theirs),
at its config's batch size, float32, every
implementation runs in its own process (so that peak memory is its own), the
implementations taking turns round after round (these machines drift by up to 30% within
minutes). Each process trains one warm-up epoch after compiling, then `--epochs` timed ones.

    python benchmarks/speed.py                           # full data, 3 timed epochs, 2 rounds
    python benchmarks/speed.py --models lenet --rounds 1 # one model
    DLRUN_DATA_DIR=../shared/data python benchmarks/speed.py --models gru_lm,seq2seq,transformer --no-cli
    DLRUN_DATA_DIR=../shared/data python benchmarks/speed.py --models word2vec,bert --no-cli --tag chapter14
    python benchmarks/speed.py --models mf,gan --no-cli --tag chapter16-17

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

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"softmax": "softmax.yaml", "mlp": "mlp.yaml", "lenet": "lenet.yaml", "bn_lenet": "bn_lenet.yaml",
           "resnet_cpu": "resnet_cpu.yaml", "vit_cpu": "vit_cpu.yaml", "gru_lm": "gru.yaml", "seq2seq": "seq2seq.yaml",
           "transformer": "transformer.yaml", "tiny_ssd": "tiny_ssd_cpu.yaml", "fcn": "fcn_cpu.yaml",
           "word2vec": "word2vec.yaml", "bert": "bert_pretrain_ptb.yaml", "mf": "mf_lowrank.yaml", "gan": "gan_gaussian.yaml"}
SEQUENCE_MODELS = {"gru_lm", "seq2seq", "transformer"}
VISION_MODELS = {"tiny_ssd", "fcn"}  # chapter 13: their configs' own generated data sets, at their sizes
PRETRAINING_MODELS = {"word2vec", "bert"}  # chapter 14: PTB through $DLRUN_DATA_DIR, named inputs, no validation split
GENERATED_MODELS = {"mf", "gan"}  # chapters 16-17: their configs' generated data at its size; short epochs
MIN_SEQUENCE_EPOCHS = 10
IMPLS = ("step", "scan", "torch")
# Targets of the performance issue (2-core CPU): dlrun / PyTorch speed-up per model, and more
SPEEDUP_TARGETS = {"softmax": 1.5, "mlp": 1.5, "lenet": 1.0, "bn_lenet": 1.0, "resnet_cpu": 1.0, "vit_cpu": 1.0, "gru_lm": 1.0, "seq2seq": 1.0,
                   "transformer": 1.0, "tiny_ssd": 1.0, "fcn": 1.0, "word2vec": 1.0, "bert": 1.0, "mf": 1.0, "gan": 1.0}


def load_cfg(model: str, args) -> object:
    from dlrun.core.config import load_config

    overrides = ["trainer.progress=none", *args.set]
    if model in VISION_MODELS | GENERATED_MODELS:  # a generated set is made at its config's size (a new size is a new set)
        return load_config(ROOT / "configs" / CONFIGS[model], overrides)
    if model == "word2vec":  # the first sentences of PTB (its vocabulary of words seen 10 times among them)
        return load_config(ROOT / "configs" / CONFIGS[model], [*overrides, f"data.num_sentences={args.num_sentences}"])
    if model == "bert":
        return load_config(ROOT / "configs" / CONFIGS[model], [*overrides, f"data.steps_per_epoch={args.bert_steps}"])
    if args.num_train:
        overrides.append(f"data.num_train={args.num_train}")
    if args.num_val:
        overrides.append(f"data.num_val={args.num_val}")
    if args.data_dir and model not in SEQUENCE_MODELS:
        overrides.append(f"data.dir={args.data_dir}")
    return load_config(ROOT / "configs" / CONFIGS[model], overrides)


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
    if "val/rmse" in result.summary:  # a rating model's held-out RMSE (D2L 16.3)
        out["val_rmse"] = result.summary["val/rmse"]
    return out


def val_accuracy(summary: dict) -> float | None:
    """The validation accuracy: of the classes, of the pixels (a segmentation), or of the
    anchors' classes (a detector: 1 - its class error, D2L 13.7); None without a validation
    split (word2vec, BERT pretraining)."""
    if "val/acc" in summary:
        return summary["val/acc"]
    return 1.0 - summary["val/class_err"] if "val/class_err" in summary else None


def worker(args) -> None:
    from dlrun.core.data import load_dataset

    cfg = load_cfg(args.model, args)
    data = load_dataset(cfg.data, cfg.seed)
    sequence = args.model in SEQUENCE_MODELS
    short = sequence or args.model in GENERATED_MODELS  # epochs of a second or less: at least 10 timed
    epochs = max(args.epochs, args.min_short_epochs) if short else args.epochs
    if args.impl == "torch":
        import torch_reference

        if args.torch_threads:  # fewer threads than cores: on a shared machine, no thread waits for a descheduled one
            import torch

            torch.set_num_threads(args.torch_threads)

        if args.model in GENERATED_MODELS:
            import recsys_gan_reference

            out = (recsys_gan_reference.run_mf if args.model == "mf" else recsys_gan_reference.run_gan)(cfg, data, epochs)
        elif args.model in PRETRAINING_MODELS:
            import nlp_reference

            out = (nlp_reference.run_word2vec if args.model == "word2vec" else nlp_reference.run_bert)(cfg, data, epochs)
        elif args.model in VISION_MODELS:
            import vision_reference

            out = (vision_reference.run_ssd(cfg, data, epochs) if args.model == "tiny_ssd" else
                   vision_reference.run_fcn(vision_reference.fcn_net(cfg.model.stages, cfg.model.stem, data.num_classes),
                                            cfg, data, epochs))
        elif sequence:
            out = torch_reference.run_sequence(args.model, cfg, data, epochs)
        else:
            out = torch_reference.run(args.model, cfg.optimizer.lr, cfg.data.batch_size, epochs,
                                      data.x_train, data.y_train, data.x_val, data.y_val, cfg.seed, cfg.optimizer.name)
    else:
        out = run_dlrun(cfg, data, args.impl, epochs)
    if sequence:  # every example trains once per epoch, the last batch partial
        out["examples"] = data.num_train
        out["tokens"] = data.y_train.size if args.model == "gru_lm" else int(data.y_train[:, -1].sum())
    elif args.model in PRETRAINING_MODELS:  # whole batches of the shuffled examples, or BERT's steps of its stream
        from dlrun.core.data.sampling import steps_per_epoch

        out["examples"] = steps_per_epoch(data.sampling, data.num_train, cfg.data.batch_size) * cfg.data.batch_size
        out["examples_in_set"] = data.num_train  # word2vec: the centre words drawn from the sentences
        out["vocab"] = data.num_classes
    elif args.model in GENERATED_MODELS:  # whole batches of the shuffled examples, the same on each side
        from dlrun.core.data.sampling import steps_per_epoch

        out["examples"] = steps_per_epoch(data.sampling, data.num_train, cfg.data.batch_size) * cfg.data.batch_size
        if out["examples_trained"] != out["examples"]:
            raise RuntimeError(f"{args.model} ({args.impl}) trained {out['examples_trained']} examples an epoch; "
                               f"dlrun's epoch is {out['examples']}")
        out["examples_in_set"] = data.num_train
    else:
        out["examples"] = (len(data.x_train) // cfg.data.batch_size) * cfg.data.batch_size  # whole batches
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(out))


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
    parser.add_argument("--models", default="softmax,mlp,lenet", help="comma-separated: " + ",".join(CONFIGS))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per process, after one warm-up epoch")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, taking turns")
    parser.add_argument("--num-train", type=int, default=None, help="fewer training images (default: all 60000)")
    parser.add_argument("--num-val", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the Fashion-MNIST files are")
    parser.add_argument("--num-sentences", type=int, default=4000, help="word2vec: the first N PTB sentences")
    parser.add_argument("--bert-steps", type=int, default=10, help="bert: batches per epoch (its config's steps_per_epoch)")
    parser.add_argument("--torch-threads", type=int, default=None, help="PyTorch's intra-op threads (default: its own)")
    parser.add_argument("--min-short-epochs", type=int, default=MIN_SEQUENCE_EPOCHS,
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
    unknown = set(models) - set(CONFIGS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; expected some of {sorted(CONFIGS)}")
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
    runs: dict = {m: {i: [] for i in impls} for m in models}
    for r in range(args.rounds):
        for m in models:
            for impl in impls:
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
            for k in ("examples_in_set", "vocab", "threads", "train_loss_G", "val_rmse"):
                if k in outs[0]:
                    row[k] = outs[0][k]
            if "tokens" in outs[0]:
                row["tokens_per_second"] = outs[0]["tokens"] / epoch_s
            if "flops_per_epoch" in outs[0]:
                row["gflop_per_epoch"] = outs[0]["flops_per_epoch"] / 1e9
                row["fraction_of_peak"] = outs[0]["flops_per_epoch"] / epoch_s / (peak_gflops * 1e9)
            table[model][impl] = row
        if "torch" in by_impl:
            for impl in ("step", "scan"):
                table[model][impl]["speedup_vs_torch"] = table[model]["torch"]["seconds_per_epoch"] / table[model][impl]["seconds_per_epoch"]
    return table


def check_targets(results: dict) -> list[dict]:
    """The issue's targets, each with the figure measured and whether it is met."""
    checks = []
    for model, rows in results["models"].items():
        best = min(("step", "scan"), key=lambda i: rows[i]["seconds_per_epoch"])
        if "torch" in rows and model in SPEEDUP_TARGETS:
            checks.append({"target": f"{model}: dlrun ({best}) >= {SPEEDUP_TARGETS[model]}x PyTorch per epoch",
                           "measured": rows[best]["speedup_vs_torch"], "met": rows[best]["speedup_vs_torch"] >= SPEEDUP_TARGETS[model]})
        if model not in SEQUENCE_MODELS | PRETRAINING_MODELS | GENERATED_MODELS:  # the compile target is for the image models
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
            quality = (f"{r['val_acc']:.3f}" if r.get("val_acc") is not None else f"RMSE {r['val_rmse']:.3f}" if "val_rmse" in r
                       else f"D {r['train_loss']:.3f} G {r['train_loss_G']:.3f}" if "train_loss_G" in r else f"loss {r['train_loss']:.3f}")
            lines.append(f"| {model} | {names[impl]} | {r['seconds_per_epoch']:.3f} | {r['compile_seconds']:.2f} | "
                         f"{rate} | {r['peak_rss_mb']:.0f} | {frac} | {quality} | {speed} |")
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
