"""The picture of the distribution-shift experiment (D2L 4.9.3): shift.png."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def shift_plot(plots: dict[str, Any], title: str = "") -> bytes:
    """Brightness of train vs test and the beta weights (covariate), priors (label), and test
    accuracy without/with correction, as PNG bytes."""
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no display needed
    )

    panels = (2 if "covariate" in plots else 0) + (1 if "label" in plots else 0) + 1
    fig = Figure(figsize=(4.2 * panels, 3.6), layout="constrained")
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    if "covariate" in plots:
        cov = plots["covariate"]
        ax = axes.pop(0)
        bins = np.linspace(0, max(cov["train"].max(), cov["test"].max()), 40)
        ax.hist(cov["train"], bins, density=True, alpha=0.6, label="biased train")
        ax.hist(cov["test"], bins, density=True, alpha=0.6, label="test")
        ax.hist(cov["train"], bins, density=True, weights=cov["beta"], histtype="step", color="k",
                label="train, beta-weighted")  # fmt: skip
        ax.set(xlabel="mean brightness", ylabel="density", title="covariate shift")
        ax.legend(fontsize=8)
        ax = axes.pop(0)
        ax.hist(cov["beta"], np.geomspace(max(cov["beta"].min(), 1e-4), cov["clip"] * 1.01, 40))
        ax.axvline(cov["clip"], color="k", linestyle="--", label=f"c = {cov['clip']:g}")
        ax.set(xscale="log", xlabel="beta = min(exp(h(x)), c)", ylabel="training examples", title="weights")
        ax.legend(fontsize=8)
    if "label" in plots:
        lab = plots["label"]
        ax = axes.pop(0)
        k = np.arange(len(lab["p"]))
        priors = {"train p(y)": lab["p"], "test q(y)": lab["q"], "estimated q": lab["q_hat"]}
        for i, (name, prior) in enumerate(priors.items()):
            ax.bar(k + (i - 1) * 0.27, prior, 0.27, label=name)
        top = 1.35 * max(max(prior) for prior in priors.values())  # room for the legend
        ax.set(xlabel="class", ylabel="prior", title="label shift", xticks=k, ylim=(0, top))
        ax.legend(fontsize=8)
    ax = axes.pop(0)
    shifts = [s for s in ("covariate", "label") if s in plots]
    pos = np.arange(len(shifts))
    for i, name in enumerate(("uncorrected", "corrected")):
        bars = ax.bar(pos + (i - 0.5) * 0.38, [plots[s]["acc"][i] for s in shifts], 0.38, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set(xticks=pos, xticklabels=shifts, ylabel="test accuracy", ylim=(0, 1.15), title="correction")
    ax.legend(loc="upper center", ncols=2, fontsize=8)
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
