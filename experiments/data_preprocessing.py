"""Data preprocessing (D2L 2.2): write the book's `house_tiny.csv`, read it, split inputs from
targets by position, one-hot encode the categorical column with a column for missing values,
fill the missing numbers with their column's mean, and convert the table to arrays.

The steps are the book's own (`pd.get_dummies(dummy_na=True)`, then `fillna(mean)`); the file
is read with the project's CSV reader (`core.data.tabular.read_table`, "NA" as missing). The
arrays are compared with the tensors the book prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlrun.core import disk
from dlrun.core.config import Config, Section, validate_options
from dlrun.core.data.tabular import read_table
from dlrun.core.report import progress

HOUSE_TINY = "NumRooms,RoofType,Price\nNA,NA,127500\n2,NA,106000\n4,Slate,178100\nNA,NA,140000\n"
BOOK_X = [[3.0, 0.0, 1.0], [2.0, 0.0, 1.0], [4.0, 1.0, 0.0], [3.0, 0.0, 1.0]]  # D2L 2.2.3's printed tensors
BOOK_Y = [127500.0, 106000.0, 178100.0, 140000.0]


class DataPreprocessingOptions(Section):
    name: str = "data_preprocessing"


def preprocess(path: Path) -> dict[str, Any]:
    """The book's steps on the CSV at `path`: the tables after each, and the arrays."""
    import pandas as pd

    data = read_table(path)
    inputs, targets = data.iloc[:, 0:2], data.iloc[:, 2]
    one_hot = pd.get_dummies(inputs, dummy_na=True)
    imputed = one_hot.fillna(one_hot.mean())
    return {"data": data, "one_hot": one_hot, "imputed": imputed,
            "X": imputed.to_numpy(dtype=float), "y": targets.to_numpy(dtype=float)}


def run(cfg: Config, run_dir: Path, source: str = "config") -> dict[str, Any]:
    """Write data/house_tiny.csv, tables.md (each step's table) and summary.json (the arrays, ours
    next to the book's, and their largest difference)."""
    validate_options(DataPreprocessingOptions, cfg, source)
    path = run_dir / "data" / "house_tiny.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    disk.write_atomic(path, HOUSE_TINY)  # as the book writes ../data/house_tiny.csv
    steps = preprocess(path)
    titles = {"data": "read_csv", "one_hot": "get_dummies(inputs, dummy_na=True)", "imputed": "fillna(inputs.mean())"}
    tables = "\n\n".join(f"## {titles[k]}\n\n```\n{steps[k].to_string()}\n```" for k in titles)
    disk.write_atomic(run_dir / "tables.md", f"# D2L 2.2: {path.name}\n\n{tables}\n")
    notes = progress.notes(cfg.trainer.progress)
    for key, title in titles.items():
        notes.note(f"{title}:\n{steps[key].to_string()}")
    X, y = steps["X"], steps["y"]
    notes.note(f"X = {X.tolist()}\ny = {y.tolist()}")
    difference = max(float(np.max(np.abs(X - np.asarray(BOOK_X)))), float(np.max(np.abs(y - np.asarray(BOOK_Y)))))
    summary = {"X": X.tolist(), "y": y.tolist(), "columns": list(steps["imputed"].columns),
               "book": {"X": BOOK_X, "y": BOOK_Y}, "max_difference": difference}
    disk.write_json(run_dir / "summary.json", summary)
    return summary

