"""The `dlrun` command line. Each command parses its arguments and calls one core function.

JAX is imported inside the commands that train, so `dlrun --help` and `dlrun list` start fast.
Exit codes: 0 success, 1 a run that failed (divergence, missing data), 2 a config or usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlrun.cli import sweep as sweep_commands
from dlrun.core.config import ConfigError, header_comment, load_config, to_yaml

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


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


def _load(config: Path, overrides: list[str] | None):
    try:
        return load_config(config, overrides or [])
    except ConfigError as err:
        raise _fail(str(err), 2) from None


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(help="A YAML experiment config, e.g. configs/mlp.yaml.")] = None,
    overrides: SetOpt = None,
    *,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: outputs/<name>-<time>).")] = None,
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue the run in this directory from its last checkpoint.")
    ] = None,
) -> None:
    """Train the model a config describes; write metrics, checkpoints, summary and curves to a run directory."""
    from dlrun.core.outputs import RunDirError, new_run_dir

    if resume is not None:
        if config is not None or out is not None:
            raise _fail("--resume RUN_DIR takes the config from the run directory; give no CONFIG or --out", 2)
        from dlrun.core.train import resume_config

        try:
            cfg = resume_config(resume, overrides or [])
        except ConfigError as err:
            raise _fail(str(err), 2) from None
        run_dir, source = resume, str(resume / "config.yaml")
    else:
        if config is None:
            raise _fail("give a CONFIG to train, or --resume RUN_DIR", 2)
        cfg = _load(config, overrides)
        source = str(config)
    experiment = _experiment(cfg, source)
    from dlrun.core.train import train as run_training  # import JAX before the run directory exists

    if resume is None:
        try:
            run_dir = new_run_dir(cfg.name, out)
        except RunDirError as err:
            raise _fail(str(err), 2) from None
    typer.echo(f"run directory: {run_dir}")
    if experiment is not None:
        if resume is not None:
            raise _fail(f"experiment '{cfg.experiment.name}' cannot be resumed; start it again", 2)
        summary = _run_guarded(lambda: experiment(cfg, run_dir, source), run_dir)
        typer.echo(f"done: {_headline(summary)}\noutputs: {run_dir}")
        return
    result = _run_guarded(lambda: run_training(cfg, run_dir, resume=resume is not None), run_dir)
    s = result.summary
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in s.items() if "/" in k)
    typer.echo(
        f"done: {metrics}\n"
        f"{s['epochs']} epochs, {s['seconds_per_epoch']:.3f} s/epoch ({s['loop']} loop), "
        f"compile {s['compile_seconds']:.2f} s, on {s['device']}\n"
        f"outputs: {run_dir}/{{config.yaml,metrics.csv,summary.json,curves.png,checkpoints/}}"
    )


def _run_guarded(fn, run_dir: Path):
    """Run a training function, turning every expected failure into a message and an exit code."""
    from dlrun.core.checkpoint import CheckpointError
    from dlrun.core.data import DataError
    from dlrun.core.datadir import DataNotFoundError
    from dlrun.core.outputs import RunDirError
    from dlrun.core.train import TrainingDiverged, TrainingInterrupted

    try:
        return fn()
    except (ConfigError, RunDirError, CheckpointError) as err:
        raise _fail(str(err), 2) from None
    except ValueError as err:  # semantic config problems found once the data is known
        raise _fail(f"{err}", 2) from None
    except (DataNotFoundError, DataError, TrainingDiverged) as err:
        raise _fail(str(err), 1) from None
    except TrainingInterrupted as err:
        typer.secho(f"interrupted: {err}; checkpoint written. Resume with:\n  dlrun train --resume {run_dir}", err=True)
        raise typer.Exit(code=130) from None
    except OSError as err:
        raise _fail(f"cannot write the run in {run_dir}: {err.strerror or err} ({err.filename or run_dir})", 1) from None


def _experiment(cfg, config):
    """The experiment module's `run` for `experiment.name`, or None for the generic loop."""
    if cfg.experiment.name == "train":
        return None
    from dlrun.experiments import EXPERIMENTS

    if cfg.experiment.name not in EXPERIMENTS:
        valid = ", ".join(["train", *sorted(EXPERIMENTS)])
        raise _fail(f"{config}: experiment.name: unknown experiment '{cfg.experiment.name}'; expected one of: {valid}", 2)
    return EXPERIMENTS[cfg.experiment.name]


def _headline(summary: dict) -> str:
    flat = {k: v for k, v in summary.items() if isinstance(v, float)}
    return "  ".join(f"{k} {v:.4g}" for k, v in list(flat.items())[:8])


@app.command("show-config")
def show_config(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Print the resolved config (defaults, base files and --set overrides applied) as YAML."""
    cfg = _load(config, overrides)
    _experiment(cfg, config)
    typer.echo(to_yaml(cfg), nl=False)


@app.command("list")
def list_configs(
    directory: Annotated[Path, typer.Argument(help="Directory of configs.")] = Path("configs"),
) -> None:
    """List the configs in a directory, one line each with the book section they reproduce."""
    if not directory.is_dir():
        raise _fail(f"{directory}: no such directory of configs (run from the project root or name it)", 2)
    paths = sorted(p for p in directory.rglob("*.yaml") if p.is_file())
    if not paths:
        raise _fail(f"{directory}: holds no .yaml configs", 2)
    width = max(len(str(p.relative_to(directory))) for p in paths)
    for path in paths:
        lines = header_comment(path)
        what = lines[0] if lines else "(no description comment)"
        typer.echo(f"{str(path.relative_to(directory)):<{width}}  {what}")


@app.command()
def gradcheck(
    config: ConfigArg,
    overrides: SetOpt = None,
    *,
    tol: Annotated[float, typer.Option(help="Largest relative error that passes.")] = 1e-6,
    per_leaf: Annotated[int, typer.Option(help="Coordinates checked per parameter array.")] = 5,
) -> None:
    """Check autodiff gradients of the config's model and loss against finite differences (D2L 4.7).

    Exits 1 when the largest relative error exceeds --tol.
    """
    cfg = _load(config, overrides)
    import jax

    jax.config.update("jax_enable_x64", True)  # finite differences need float64
    from dlrun.core.data import DataError
    from dlrun.core.datadir import DataNotFoundError
    from dlrun.core.gradcheck import gradcheck as check

    try:
        result = check(cfg, per_leaf=per_leaf)
    except (DataNotFoundError, DataError) as err:
        raise _fail(str(err), 1) from None
    for row in result.rows:
        typer.echo(
            f"{row['param']:<22} {str(row['index']):<12} autodiff {row['autodiff']:+.10e}  "
            f"numeric {row['numeric']:+.10e}  rel {row['rel_error']:.1e}"
        )
    verdict = "ok" if result.max_rel_error <= tol else "FAILED"
    typer.echo(f"{verdict}: {result.checked} coordinates, largest relative error {result.max_rel_error:.2e} (tol {tol:.0e})")
    if result.max_rel_error > tol:
        raise typer.Exit(code=1)


app.command()(sweep_commands.sweep)
app.command()(sweep_commands.compare)


def main() -> None:  # pragma: no cover - console entry point
    app()
