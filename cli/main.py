"""The `dlrun` command line. Each command parses its arguments and calls one core function.

JAX is imported inside the commands that train, so `dlrun --help` and `dlrun list` start fast.
Exit codes (`core.errors`): 0 success, 2 a config, data or usage error, 1 a run that diverged or
an internal error (a bug), 130 an interrupted run (resumable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlrun.cli import listing
from dlrun.cli import predict as predict_commands
from dlrun.cli import reproduce as reproduce_commands
from dlrun.cli import sweep as sweep_commands
from dlrun.cli.errors import fail, guarded
from dlrun.cli.options import LogToOpt, MlflowUriOpt, tracking_overrides
from dlrun.core.config import load_config, to_yaml

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run the experiments of Dive into Deep Learning from YAML configs, on JAX.",
)

ConfigArg = Annotated[Path, typer.Argument(help="A YAML experiment config, e.g. configs/mlp.yaml.")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config value: --set optimizer.lr=0.05 (value parsed as YAML)."),
]


def _load(config: Path, overrides: list[str] | None):
    with guarded():
        return load_config(config, overrides or [])


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Print the traceback of an internal error.")] = False,
) -> None:
    ctx.obj = {"debug": debug}


@app.command()
def train(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Argument(help="A YAML experiment config, e.g. configs/mlp.yaml.")] = None,
    overrides: SetOpt = None,
    *,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: outputs/<name>-<time>).")] = None,
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue the run in this directory from its last checkpoint.")
    ] = None,
    coordinator: Annotated[Optional[str], typer.Option(
        envvar="DLRUN_COORDINATOR", rich_help_panel="Several machines",
        help="HOST:PORT of process 0, to train as one of --num-processes processes (jax.distributed); "
             "'auto': read them from the cluster scheduler (SLURM, Open MPI).")] = None,
    num_processes: Annotated[Optional[int], typer.Option(envvar="DLRUN_NUM_PROCESSES", rich_help_panel="Several machines",
                                                         min=1, help="How many processes train together.")] = None,
    process_id: Annotated[Optional[int], typer.Option(envvar="DLRUN_PROCESS_ID", rich_help_panel="Several machines",
                                                      min=0, help="This process's rank, 0 to --num-processes - 1.")] = None,
    peer_timeout: Annotated[float, typer.Option(envvar="DLRUN_PEER_TIMEOUT", rich_help_panel="Several machines", min=1,
                                                help="Seconds each process waits for the others to join.")] = 300,
    log_to: LogToOpt = None,
    mlflow_uri: MlflowUriOpt = None,
) -> None:
    """Train the model a config describes; write metrics, checkpoints, summary and curves to a run directory."""
    from dlrun.core.training.signals import StopFlag  # before JAX: a stop at any moment waits for a safe point

    with StopFlag().installed():
        _train(ctx, config, overrides, out, resume, (coordinator, num_processes, process_id, peer_timeout), log_to, mlflow_uri)


def _train(ctx, config, overrides, out, resume, processes, log_to, mlflow_uri) -> None:
    coordinator = processes[0]
    from dlrun.core.report.outputs import new_run_dir
    from dlrun.core.training.train import resume_config
    from dlrun.experiments import experiment_for, run_config

    overrides = [*(overrides or []), *tracking_overrides(log_to, mlflow_uri)]
    with guarded(ctx):
        if coordinator is not None:
            from dlrun.core.training.devices import start_processes

            if out is None and resume is None:
                raise fail("training over several processes needs the same run directory in each: give --out DIR", 2)
            start_processes(*processes)
        if resume is not None:
            if config is not None or out is not None:
                raise fail("--resume RUN_DIR takes the config from the run directory; give no CONFIG or --out", 2)
            cfg, source = resume_config(resume, overrides or []), str(resume / "config.yaml")
        elif config is None:
            raise fail("give a CONFIG to train, or --resume RUN_DIR", 2)
        else:
            cfg, source = load_config(config, overrides or []), str(config)
        experiment = experiment_for(cfg, source)
        run_dir = resume if resume is not None else new_run_dir(cfg.name, out)
    typer.echo(f"run directory: {run_dir}")
    with guarded(ctx, run_dir, resume_hint=f"dlrun train --resume {run_dir}"):
        summary = run_config(cfg, run_dir, resume=resume is not None, source=source)
    if experiment is not None:
        typer.echo(f"done: {_headline(summary)}\noutputs: {run_dir}")
        return
    s = summary
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in s.items() if "/" in k)
    typer.echo(
        f"done: {metrics}\n"
        f"{s['epochs']} epochs, {s['seconds_per_epoch']:.3f} s/epoch ({s['loop']} loop), "
        f"compile {s['compile_seconds']:.2f} s, on {s['device']}"
    )
    for line in _generated(s):
        typer.echo(line)
    extra = sorted(p.name for p in Path(run_dir).glob("*.png") if p.name != "curves.png")
    files = ",".join(["config.yaml", "metrics.csv", "summary.json", "curves.png", *extra, "checkpoints/"])
    typer.echo(f"outputs: {run_dir}/{{{files}}}")


def _generated(summary: dict) -> list[str]:
    """What a generative model's summary holds, as lines: a sample continuation, translations."""
    lines = []
    if "sample" in summary:
        lines.append(f"sample: {summary['sample']['text']!r}")
    for t in summary.get("translations", []):
        lines.append(f"{t['source']} => {t['translation']}  (bleu {t['bleu']:.3f}; reference: {t['reference']})")
    if "bleu" in summary:
        b = summary["bleu"]
        lines.append("held-out corpus BLEU over {} pairs: ".format(b["pairs"])
                     + ", ".join(f"{k} {v:.4f}" for k, v in b.items() if k != "pairs"))
    return lines


def _headline(summary: dict) -> str:
    flat = {k: v for k, v in summary.items() if isinstance(v, float)}
    return "  ".join(f"{k} {v:.4g}" for k, v in list(flat.items())[:8])


@app.command("show-config")
def show_config(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Print the resolved config (defaults, base files and --set overrides applied) as YAML."""
    from dlrun.experiments import experiment_for

    cfg = _load(config, overrides)
    with guarded():
        experiment_for(cfg, str(config))
    typer.echo(to_yaml(cfg), nl=False)


@app.command()
def gradcheck(
    ctx: typer.Context,
    config: ConfigArg,
    overrides: SetOpt = None,
    *,
    tol: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    per_leaf: Annotated[int, typer.Option(min=1, max=10_000, help="Coordinates checked per parameter array.")] = 5,
) -> None:
    """Check autodiff gradients of the config's model and loss against finite differences (D2L 4.7).

    Exits 1 when the largest relative error exceeds --tol.
    """
    import math

    if not (math.isfinite(tol) and tol >= 0):
        raise fail(f"--tol {tol}: expected a finite number >= 0, e.g. 1e-6", 2)
    cfg = _load(config, overrides)
    import jax

    jax.config.update("jax_enable_x64", True)  # finite differences need float64
    from dlrun.core.training.gradcheck import gradcheck as check

    with guarded(ctx):
        result = check(cfg, per_leaf=per_leaf)
    for row in result.rows:
        typer.echo(
            f"{row['param']:<22} {str(row['index']):<12} autodiff {row['autodiff']:+.10e}  "
            f"numeric {row['numeric']:+.10e}  rel {row['rel_error']:.1e}"
        )
    passed = math.isfinite(result.max_rel_error) and result.max_rel_error <= tol  # a NaN gradient never passes
    typer.echo(f"{'ok' if passed else 'FAILED'}: {result.checked} coordinates, largest relative error "
               f"{result.max_rel_error:.2e} (tol {tol:.0e})" + ("" if math.isfinite(result.max_rel_error) else
                                                              "; a gradient or its finite difference is not finite"))
    if not passed:
        raise typer.Exit(code=1)


@app.command()
def summary(
    ctx: typer.Context,
    config: ConfigArg,
    overrides: SetOpt = None,
    *,
    depth: Annotated[Optional[int], typer.Option(min=1, help="Rows at this nesting depth (1: top-level layers); default: every layer.")] = None,
) -> None:
    """Print the config's network layer by layer: output shape, parameters and FLOPs per example
    (XLA's cost analysis), without training."""
    cfg = _load(config, overrides)
    from dlrun.core.data import load_dataset
    from dlrun.core.training.setup import network_summary

    with guarded(ctx):
        rows, in_shape = network_summary(cfg, load_dataset(cfg.data, cfg.seed), depth)
    typer.echo(format_summary(rows, in_shape))


def format_summary(rows, in_shape: tuple[int, ...]) -> str:
    width = max([len("layer")] + [len(r.path) for r in rows])
    lines = [f"{'layer':<{width}}  {'output shape':<16} {'params':>12} {'FLOPs':>14}", "-" * (width + 46),
             f"{'input':<{width}}  {_shape_text(in_shape):<16} {'':>12} {'':>14}"]
    lines += [f"{r.path:<{width}}  {'x'.join(map(str, r.out_shape)):<16} {r.params:>12,} {r.flops:>14,.0f}" for r in rows]
    lines += ["-" * (width + 46),
              f"{'total':<{width}}  {'':<16} {sum(r.params for r in rows):>12,} {sum(r.flops for r in rows):>14,.0f}"]
    return "\n".join(lines)


app.command()(predict_commands.predict)
app.command()(sweep_commands.sweep)
app.command()(sweep_commands.compare)
app.command()(reproduce_commands.reproduce)
app.command("list")(listing.list_configs)
app.command()(listing.runs)


def _shape_text(shape) -> str:
    """`28x28x1`, or for named inputs `src 9, src_len (), dec 9`."""
    if isinstance(shape, dict):
        return ", ".join(f"{k} {'x'.join(map(str, v)) or '()'}" for k, v in shape.items())
    return "x".join(map(str, shape))


def main() -> None:
    """The console entry point. Once a command has ended and said how, a SIGINT or SIGTERM during
    the interpreter's exit has nothing left to stop and is ignored (rather than killing the
    process with no message)."""
    import signal

    try:
        app()
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
