"""Synthetic data: linear regression and polynomials from known weights (D2L 3.3, 4.4), and
the noisy sine series (D2L 9.1).

Generated with NumPy from the seed, so that every backend sees the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..config import GaussianGANData, PolynomialData, SineData, SyntheticRegressionData
from .dataset import Dataset


def synthetic_regression(cfg: SyntheticRegressionData, seed: int) -> Dataset:
    """y = X w + b + eps, X ~ N(0, 1), eps ~ N(0, noise^2) (D2L 3.3, `SyntheticRegressionData`).

    Generated with NumPy from the seed, so every backend sees the same numbers.
    """
    rng = np.random.default_rng([seed, 3_3])
    w = np.asarray(cfg.weights(), np.float32)
    n = cfg.num_train + cfg.num_val
    x = rng.standard_normal((n, w.size)).astype(np.float32)
    y = (x @ w + cfg.true_b + cfg.noise * rng.standard_normal(n)).astype(np.float32)[:, None]
    t = cfg.num_train
    return Dataset(x[:t], y[:t], x[t:], y[t:], None, meta={"true_w": w.tolist(), "true_b": cfg.true_b})


def polynomial(cfg: PolynomialData, seed: int) -> Dataset:
    """Features x^i / i! (i < max_degree) of x ~ N(0, 1); labels from `true_w` padded with zeros
    plus N(0, noise^2); the model sees the first `num_features` features (D2L 4.4.4)."""
    rng = np.random.default_rng([seed, 4_4])
    n = cfg.num_train + cfg.num_val
    x = rng.standard_normal((n, 1))
    powers = np.arange(cfg.max_degree)
    features = x**powers / np.cumprod(np.maximum(powers, 1))  # x^i / i!, i! as a running product
    true_w = np.zeros(cfg.max_degree)
    true_w[: len(cfg.true_w)] = cfg.true_w
    y = features @ true_w + cfg.noise * rng.standard_normal(n)
    feats = features[:, : cfg.num_features].astype(np.float32)
    y = y.astype(np.float32)[:, None]
    t = cfg.num_train
    used_w = np.zeros(cfg.num_features)
    k = min(cfg.num_features, cfg.max_degree)
    used_w[:k] = true_w[:k]
    return Dataset(feats[:t], y[:t], feats[t:], y[t:], None, meta={"true_w": used_w.tolist(), "true_b": 0.0})


def sine_series(cfg: SineData, seed: int) -> np.ndarray:
    """x_t = sin(0.01 t) + N(0, noise^2) for t = 1..T, float32 (T,)."""
    rng = np.random.default_rng([seed, 9_1])
    t = np.arange(1, cfg.T + 1, dtype=np.float64)
    return (np.sin(0.01 * t) + cfg.noise * rng.standard_normal(cfg.T)).astype(np.float32)


def lagged(x: np.ndarray, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (T - tau, tau): row i holds x[i .. i + tau - 1]; labels (T - tau, 1): x[i + tau]."""
    n = len(x) - tau
    return np.stack([x[i : i + n] for i in range(tau)], axis=1), x[tau:, None].copy()


def sine(cfg: SineData, seed: int) -> Dataset:
    """The series as (previous tau values -> next value) examples (D2L 9.1.2)."""
    x = sine_series(cfg, seed)
    feats, labels = lagged(x, cfg.tau)
    t = cfg.num_train
    return Dataset(feats[:t], labels[:t], feats[t:], labels[t:], None, meta={"series": x.tolist(), "tau": cfg.tau})


def gan_gaussian(cfg: GaussianGANData, seed: int) -> Dataset:
    """X A + b with X ~ N(0, I) (D2L 17.1); no labels (y is zeros) and no validation split."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(cfg.A, np.float32), np.asarray(cfg.b, np.float32)
    x = (rng.standard_normal((cfg.num_train, 2)).astype(np.float32) @ a + b).astype(np.float32)
    empty = np.zeros((0, 2), np.float32)
    return Dataset(x, np.zeros((cfg.num_train, 1), np.float32), empty, np.zeros((0, 1), np.float32), num_classes=None,
                   meta={"mean": b.tolist(), "cov": (a.T @ a).tolist()})
