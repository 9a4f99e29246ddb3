"""The GPU check's report (`gpu_check.py`) as Markdown: the device, each config's row, the
comparison with PyTorch and what the figures mean."""

from __future__ import annotations


def _num(v, fmt: str = ".2f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _losses(row: dict) -> str:
    losses = row.get("losses")
    return f"{losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "-"


def config_line(name: str, r: dict) -> str:
    if "steps" not in r:  # never ran, or raised before its first step
        return f"| {name} | {r['status']} | - | - | - | - | - | - | - | - | - | - | {r['error'] or ''} |"
    return (f"| {name} | {r['status']} | {r['steps']} | {r['batch_size']} | {r['params']:,} | {r['init_seconds']:.2f} | "
            f"{r['compile_seconds']:.2f} | "
            f"{r['steps_per_second']:.1f} | {r['examples_per_second']:,.0f} | {r['loss_metric']} {_losses(r)} | "
            f"{r['recompiles']} | {_num(r['program_peak_mb'], '.1f')} / {_num(r['device_peak_mb'], '.0f')} | "
            f"{r['error'] or ''} |")


def comparison_line(name: str, r: dict) -> str:
    d, t = r.get("dlrun"), r.get("torch")
    if d is None:
        return f"| {name} | {r['status']} | - | - | - | - | - | - | {r['error'] or ''} |"
    torch_rate = f"{t['examples_per_second']:,.0f}" if t else "-"
    ratio = f"{r['dlrun_over_torch']:.2f}x" if t else "-"
    return (f"| {name} | {r['status']} | {d['examples_per_second']:,.0f} | {torch_rate} | {ratio} | {d['compile_seconds']:.2f} | "
            f"{_losses(d)} | {_losses(t) if t else '-'} | {r['error'] or ''} |")


def to_markdown(report: dict) -> str:
    v, dev = report["versions"], report["device"]
    torch_flags = (f" PyTorch on {dev['torch_device']}, matmul TF32 {dev['torch_matmul_allow_tf32']}, cuDNN TF32 "
                   f"{dev['torch_cudnn_allow_tf32']}." if "torch_device" in dev else " PyTorch is not installed.")
    lines = [f"# GPU check{' (smoke)' if report['smoke'] else ''}: {report['machine']}, {report['date']}", "",
             f"**{'PASSED' if report['passed'] else 'FAILED' if report['finished'] else 'UNFINISHED'}** in "
             f"{report['total_seconds']:.0f} s (budget "
             f"{report['budget_seconds']:.0f} s). {dev['kind']} ({dev['backend']}, {dev['count']} device(s)), "
             + ", ".join(f"{k} {val}" for k, val in v.items())
             + f"; JAX matmul precision {dev['jax_default_matmul_precision'] or 'default'}.{torch_flags} "
             f"dlrun: {report['dlrun']}.", "",
             "The data are generated, never downloaded (`benchmarks/gpu_data.py`): Fashion-MNIST-shaped IDX files whose "
             "class is a bright band, a folder of coloured-square sprites for dcgan, word-for-word English-French "
             "pairs for the Transformer; the recommenders' `_lowrank` / `_generated` configs make their own. "
             + ("Smoke run: every model shrunk to a tiny size; the figures say nothing of speed." if report["smoke"]
                else "Each config at its own size and batch."), "",
             "| config | status | steps | batch | params | init s | compile s | steps/s | examples/s | "
             "loss, first -> last step | compiles in timed steps | MB: step program / device peak | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [config_line(name, r) for name, r in report["configs"].items()]
    lines += ["", "Init s: `start_state`, compiling and running the initialisation. Compile s: lowering and compiling the "
              "step. Steps/s and examples/s: the steps after the warm-up. The loss falls when the mean of the last fifth "
              "of the steps is below that of the first fifth (a GAN's: the discriminator's). MB: the step program's peak "
              "(XLA's memory analysis) / the device's high-water mark so far (`memory_stats`; it cannot be reset, so it "
              "never falls from one config to the next; n/a on a CPU).", "",
              "## dlrun against PyTorch, same device", "",
              "| model, precision | status | dlrun examples/s | PyTorch examples/s | dlrun / PyTorch | dlrun compile s | "
              "dlrun loss | PyTorch loss | notes |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [comparison_line(name, r) for name, r in report["comparisons"].items()]
    lines += ["", "The same network, batch, optimizer, arrays and steps on both sides, each step gathering its batch on "
              "the device; dlrun's f32 figures are its config check's own run (the same program). f32: each framework's "
              "defaults (JAX's matmul precision and PyTorch's TF32 flags above). bf16: dlrun casts params, model state "
              "and floating inputs to bfloat16 inside the step, keeping float32 params and updates; PyTorch runs the "
              "forward pass under torch.autocast(dtype=torch.bfloat16)."]
    return "\n".join(lines) + "\n"
