"""Fine-tuning BERT for natural language inference (D2L 15.7): the encoder pretrained by 14.10's
config, fine-tuned on premise-hypothesis pairs, against the same classifier from scratch.

The book fine-tunes d2l's pretrained "bert.small"; those weights cannot be had here, so the
encoder is one this project pretrains (its 2020 edition did the same: pretrain on WikiText-2,
then fine-tune). Each run is a sub-run of the one training loop in the run directory:
`pretrain/` (the config `pretrain_config` names, unless `pretrained` names a finished
pretraining run), `fine_tuned/` (`init_from` the pretraining run, its encoder and NSP hidden
layer copied, a new `output` layer) and, with `scratch`, `scratch/` (nothing copied). The
classifier takes its sizes from the pretraining run's config and reads its inputs with that
run's vocabulary (its vocab.json). Writes config.yaml, results.csv (one row per run),
metrics.csv (every run's epochs), val_acc.png and summary.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from dlrun.core import disk
from dlrun.core.config import Config, ConfigError, Section, derive, load_config, validate_options
from dlrun.core.config.bert import BertModel, BertSNLIData
from dlrun.core.data import load_dataset
from dlrun.core.report import outputs
from dlrun.core.training.summary import runtime
from dlrun.core.training.train import train

from .fine_tuning import plot_val_acc

SIZES = ("num_hiddens", "ffn_num_hiddens", "num_heads", "num_blks", "max_len")  # the encoder's, copied from the pretraining run


class BertNLIOptions(Section):
    """The keys beside `experiment.name: bert_nli`."""

    pretrained: str | None = Field(None, description="a finished pretraining run (model.name: bert); null: pretrain first")
    pretrain_config: str = Field("bert_pretrain_ptb.yaml", min_length=1,
                                 description="the pretraining config, relative to this config's folder")
    pretrain: dict[str, Any] = Field(default_factory=dict, description="changes to it (dotted keys: trainer.epochs)")
    scratch: bool = Field(True, description="also train the classifier from scratch, for comparison")


def run(cfg: Config, run_dir: str | Path, source: str = "config") -> dict[str, Any]:
    """Pretrain (or take a pretraining run), then fine-tune it and train from scratch on the pairs."""
    opts = validate_options(BertNLIOptions, cfg, source)
    if not isinstance(cfg.data, BertSNLIData) or cfg.model.name != "bert_classifier":
        raise ConfigError(f"{source}: experiment bert_nli fine-tunes model.name: bert_classifier on data.name: snli_bert; "
                          f"found {cfg.model.name} on {cfg.data.name}")
    run_dir, t_start = Path(run_dir), time.perf_counter()
    results: dict[str, Any] = {}
    pretrained = Path(opts.pretrained).expanduser() if opts.pretrained else None
    if pretrained is None:
        pre_cfg = pretraining_config(opts, source)
        results["pretrain"] = train(derive(pre_cfg, {"name": "pretrain", **quiet()}, source), run_dir / "pretrain", plot=False)
        pretrained = run_dir / "pretrain"
    sizes = pretrained_sizes(pretrained, source)
    cfg = derive(cfg, {"data.vocab_from": str(pretrained), **{f"model.{k}": v for k, v in sizes.items()}}, source)
    pairs = load_dataset(cfg.data, cfg.seed)  # read once, for every run
    variants = {"fine_tuned": {"init_from": {"run": str(pretrained), "exclude": ["output/*"]}}}
    if opts.scratch:
        variants["scratch"] = {"init_from": None}
    for name, changes in variants.items():
        results[name] = train(derive(cfg, {"name": name, **quiet(), **changes}, source), run_dir / name, data=pairs, plot=False)
    summary = report(run_dir, results) | {"pretrained": str(pretrained), "sizes": sizes, "num_train": pairs.num_train,
                                          "num_val": len(pairs.y_val), "data_source": pairs.meta.get("source"),
                                          "wall_seconds": time.perf_counter() - t_start} | runtime()
    disk.write_json(run_dir / "summary.json", summary)
    return summary


def quiet() -> dict[str, Any]:
    return {"trainer.progress": "none", "trainer.checkpoint_every": 0}


def pretraining_config(opts: BertNLIOptions, source: str) -> Config:
    """The pretraining config beside this one, with `opts.pretrain`'s changes.

    Raises:
        ConfigError: no such file, or one that does not pretrain BERT.
    """
    folder = Path(source).parent if Path(source).is_file() else Path.cwd()
    path = (folder / opts.pretrain_config).expanduser()
    if not path.is_file():
        raise ConfigError(f"{source}: experiment.pretrain_config: {path} not found")
    pre = derive(load_config(path), dict(opts.pretrain), f"{source}: experiment.pretrain")
    if not isinstance(pre.model, BertModel):
        raise ConfigError(f"{source}: experiment.pretrain_config: {path} trains model.name: {pre.model.name}, not bert")
    return pre


def pretrained_sizes(run: Path, source: str) -> dict[str, Any]:
    """The encoder's sizes from a pretraining run's config.yaml (the classifier must match them).

    Raises:
        ConfigError: not a run directory, or not a BERT pretraining run.
    """
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{source}: experiment.pretrained: {run} is not a run directory (no config.yaml)")
    model = load_config(run / "config.yaml").model
    if not isinstance(model, BertModel):
        raise ConfigError(f"{source}: experiment.pretrained: {run} trained model.name: {model.name}, not bert")
    return {k: getattr(model, k) for k in SIZES}


def report(run_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """results.csv, metrics.csv and val_acc.png of the runs; the summary's numbers."""
    table, rows, summary = [], [], {}
    for name, result in results.items():
        last = result.rows[-1]
        line = {"run": name, "epochs": last["epoch"], **{k: v for k, v in last.items() if "/" in k},
                "train_seconds": result.summary["train_seconds"]}
        table.append(line)
        rows += [{"run": name, **{k: v for k, v in r.items() if k == "epoch" or "/" in k}} for r in result.rows]
        summary |= {f"{name}/{k}": v for k, v in line.items() if "/" in k}
        summary |= {f"{name}/{k}": v for k, v in result.summary.items() if k.startswith("all_steps/")}
    outputs.write_metrics(run_dir / "results.csv", table)
    outputs.write_metrics(run_dir / "metrics.csv", rows)
    plot_val_acc(run_dir / "val_acc.png", {n: r.rows for n, r in results.items() if n != "pretrain"},
                 "D2L 15.7: BERT fine-tuned vs from scratch")
    if "scratch/val/acc" in summary:
        summary["fine_tuned_minus_scratch"] = summary["fine_tuned/val/acc"] - summary["scratch/val/acc"]
    return summary


# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {
    "bert_nli": (run, BertNLIOptions, ("fine_tuned/val/acc", "scratch/val/acc", "fine_tuned_minus_scratch")),
}
