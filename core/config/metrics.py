"""Which metrics a run reports, decided once, from its config (no JAX: the config checks use it).

Each data section says what its examples are for (`task`: a language model's windows, a
translation's pairs, or supervised examples) and which numbers its runs add (`reports`: the
synthetic data's weight errors); each loss says whether it classifies. From these follow every
split's metrics (`loss`, `acc` for classifiers, `ppl` for language models), the summary keys a
`book.metric` or a sweep's target may name, and which metric "best" means by default. The loss
registry (`core.nn.losses`), evaluation (`core.training.setup`), sweeps and `dlrun runs` ask
here.
"""

from __future__ import annotations

from typing import Any

CLASSIFYING_LOSSES = frozenset({"cross_entropy", "masked_cross_entropy", "binary_cross_entropy", "pixel_cross_entropy"})  # outputs are logits
SPLITS = ("train", "val")


def classifies(loss_name: str) -> bool:
    return loss_name in CLASSIFYING_LOSSES


def task(cfg: Any) -> str:
    """`language_model`, `translation`, `adversarial` (a GAN's examples), `rating` (explicit
    ratings, D2L 16.3), `ranking` (implicit feedback, D2L 16.5), `detection` (boxes, D2L 13.6),
    `segmentation` (per-pixel labels, D2L 13.9), `bert_pretraining` (masked tokens and sentence
    pairs, D2L 14.10) or `supervised`: what the data section's
    examples are for."""
    return type(cfg.data).task


def split_metrics(cfg: Any, split: str = "val") -> tuple[str, ...]:
    """The metrics `split` reports, in metrics.csv's order (`val/loss`, `val/acc`, ...). The
    training split reports what the training step measures; the others what evaluation does."""
    if task(cfg) == "adversarial":  # the discriminator's and the generator's losses (D2L 17.1)
        return ("loss_D", "loss_G")
    if task(cfg) == "ranking":  # evaluation ranks every unseen item: no loss (D2L 16.5)
        return ("loss",) if split == "train" else ("hit_rate", "auc")
    if task(cfg) == "detection":  # over the anchors, as the book's training prints them (D2L 13.7)
        return ("loss", "class_err", "bbox_mae", "top_iou")  # and the best detection's IoU with the object
    if task(cfg) == "bert_pretraining":  # the sum and its two terms, as the book prints them (D2L 14.10)
        return ("loss", "mlm_loss", "nsp_loss")
    names = ["loss"]
    if classifies(cfg.loss.name):
        names.append("acc")
    if task(cfg) == "language_model":
        names.append("ppl")  # exp of the mean cross-entropy per token (D2L 9.3.2)
    if task(cfg) == "rating" and split != "train":
        names.append("rmse")  # over the held-out ratings (D2L 16.3)
    return tuple(names)


def reported(cfg: Any) -> set[str]:
    """The summary.json keys a run of the training loop reports for `cfg`."""
    splits = getattr(type(cfg.data), "splits", SPLITS)
    return {f"{s}/{m}" for s in splits for m in split_metrics(cfg, s)} | {"w_norm", *type(cfg.data).reports}


def target(cfg: Any) -> tuple[str, str]:
    """The metric that says which run is best by default, and whether higher is better:
    perplexity for a language model, the loss for translation (its token accuracy says little)
    and regression, accuracy for the other classifiers."""
    if task(cfg) == "adversarial":  # no split says which GAN is best; the generator's loss is a convention
        return "train/loss_G", "min"
    if task(cfg) == "bert_pretraining":  # pretraining has no held-out split (D2L 14.10)
        return "train/loss", "min"
    if task(cfg) in ("rating", "ranking", "detection"):
        metric = {"rating": "val/rmse", "ranking": "val/hit_rate", "detection": "val/class_err"}[task(cfg)]
        return metric, mode(metric)
    metric = ("val/ppl" if task(cfg) == "language_model" else
              "val/loss" if task(cfg) == "translation" or not classifies(cfg.loss.name) else "val/acc")
    return metric, mode(metric)


def mode(metric: str) -> str:
    """"max" for accuracies, hit rates and AUCs, "min" for losses, errors and perplexities."""
    return "max" if metric.endswith(("acc", "hit_rate", "auc")) else "min"


def result_of(summary: dict[str, Any], cfg: Any | None) -> str | None:
    """The summary key that is a run's result: its config's target when the run reports it,
    else the first number among the validation metrics, the loss or an experiment's `loss`."""
    if cfg is not None and cfg.experiment.name == "train" and isinstance(summary.get(target(cfg)[0]), (int, float)):
        return target(cfg)[0]
    numbers = [k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return next((k for k in numbers if k.startswith("val/")), None) or ("loss" if "loss" in numbers else None)
