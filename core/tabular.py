"""Tabular data from CSV files with pandas preprocessing (D2L 2.2, 4.10)."""

from __future__ import annotations


def csv_dataset(cfg, seed: int):
    raise NotImplementedError("the csv data set is being written")
