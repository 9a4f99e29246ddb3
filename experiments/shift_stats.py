"""The statistics of label shift (D2L 4.9.3.3): samples drawn with given class priors, the
confusion matrix, and the target prior estimated from it."""

from __future__ import annotations

import numpy as np

from dlrun.core.errors import ConfigError


def sample_by_prior(labels, prior, sizes, rng, split: str, source: str) -> list[np.ndarray]:
    """Disjoint index sets, the s-th of sizes[s] examples with class proportions `prior`
    (normalised; counts rounded by largest remainder), drawn without replacement."""
    prior = np.asarray(prior, np.float64) / np.sum(prior)
    counts = [_round_counts(prior * n) for n in sizes]
    picks: list[list[np.ndarray]] = [[] for _ in sizes]
    for c in range(len(prior)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        need = sum(int(cnt[c]) for cnt in counts)
        if need > len(idx):
            raise ConfigError(
                f"{source}: experiment.label: the {split} split has {len(idx)} examples of class {c}, "
                f"but the priors and sizes ask for {need}; lower the sizes or flatten the priors"
            )
        start = 0
        for s, cnt in enumerate(counts):
            picks[s].append(idx[start : start + cnt[c]])
            start += cnt[c]
    return [rng.permutation(np.concatenate(p)) for p in picks]


def _round_counts(expected: np.ndarray) -> np.ndarray:
    counts = np.floor(expected).astype(int)
    short = int(round(expected.sum())) - counts.sum()
    counts[np.argsort(counts - expected)[:short]] += 1  # largest remainders first
    return counts


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C[i, j] = P(y_hat = i | y = j) on a sample of the training distribution: of the examples
    of true class j, the fraction predicted i. Under label shift P(y_hat | y) is the same on the
    test distribution, so mu(y_hat) = C q(y) (D2L 4.9.3.3)."""
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (predicted, labels), 1.0)
    return joint / np.maximum(joint.sum(axis=0, keepdims=True), 1.0)


def estimate_target_prior(confusion: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Solve C q = mu by least squares, clip to q >= 0 and renormalise (C may be ill-conditioned
    or mu noisy, so the exact C^-1 mu can leave the simplex)."""
    q, *_ = np.linalg.lstsq(confusion, mu, rcond=None)
    q = np.clip(q, 0.0, None)
    if q.sum() <= 0:
        raise ValueError("the estimated target prior is zero everywhere; the confusion matrix is degenerate")
    return q / q.sum()
