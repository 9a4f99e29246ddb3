"""Synthetic data made from known weights: linear regression (D2L 3.3) and polynomials (D2L 4.4).

Generated with NumPy from the seed, so that every backend sees the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..config import PolynomialData, SyntheticRegressionData
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
