"""Tabular data from CSV files, preprocessed with pandas (D2L 2.2, 4.10).

Numeric columns are standardised with the training rows' mean and standard deviation and their
missing values set to 0 (the mean, after standardising); categorical columns are one-hot encoded
with a category for missing values, as `pd.get_dummies(dummy_na=True)` does. A `Preprocessor`
is fitted on training rows only and then transforms any table with the same columns, so that
validation and test rows never leak into the statistics.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import CSVData
from ..errors import DataError, DataNotFoundError
from .dataset import Dataset
from .files import RemoteFile, find_or_fetch, search_dirs

if TYPE_CHECKING:
    import pandas as pd  # imported where a table is read: a run on other data never pays for it

D2L_DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"
# The files the book downloads, by name, with the sha1 its DATA_HUB declares.
KNOWN_FILES = {
    "kaggle_house_pred_train.csv": "585e9cc93e70b39160e7921475f9bcd7d31219ce",
    "kaggle_house_pred_test.csv": "fa19780a7b011d9b009e8bff8e99922a8ee2eb90",
}


# ------------------------------------------------------------------------- reading


def locate(file: str, configured_dir: str | None = None) -> Path:
    """The path of a CSV: `file` itself when it exists, else a file of that name in the data
    directories (the configured one, `$DLRUN_DATA_DIR`, the cache); the book's Kaggle files are
    downloaded (sha1-checked) when found nowhere.

    Raises:
        DataNotFoundError: found nowhere (and not downloadable); the message lists where it looked.
    """
    path = Path(file).expanduser()
    if path.is_file():
        return path
    if path.name != file or path.name in ("", ".", ".."):  # a path with directories: no look-up
        raise DataNotFoundError(f"data file {file} not found (no such file)")
    if file in KNOWN_FILES:
        return find_or_fetch(RemoteFile(file, D2L_DATA_URL + file, KNOWN_FILES[file]), configured_dir)
    dirs = search_dirs(configured_dir)
    for d in dirs:
        if (d / file).is_file():
            return d / file
    looked = "\n".join(f"  {d}" for d in dirs)
    raise DataNotFoundError(
        f"data file {file} not found; looked in the current directory and:\n{looked}\n"
        "Give its path, or point DLRUN_DATA_DIR at the directory that holds it."
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV with a header row; "NA" and empty fields become missing values (as in D2L 2.2).

    Raises:
        DataError: the file is not UTF-8 text, is empty, is not a CSV, has no data rows, or
            holds a number that is infinite or beyond float32's range.
    """
    import pandas as pd

    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: is not a UTF-8 text file (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "expected a CSV table with a header row"
        ) from None
    if "\x00" in text:
        raise DataError(f"{path}: holds NUL bytes, so it is not a text file; expected a CSV table")
    if not text.strip():
        raise DataError(f"{path}: is empty; expected a CSV table with a header row and data rows")
    try:
        table = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: is not a valid CSV table: {' '.join(str(err).split())}") from None
    if len(table) == 0:
        raise DataError(f"{path}: has a header row ({', '.join(map(str, table.columns[:8]))}) but no data rows")
    check_numbers(table, str(path))
    return table


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_numbers(table: pd.DataFrame, source: str) -> None:
    """Every number in a numeric column is finite and fits float32 (a missing value is fine): an
    `inf` or 1e300 would otherwise surface as a diverging run far from its cause.

    Raises:
        DataError: naming the file, the column, the first bad row (its line in the file) and value.
    """
    for column in table.columns:
        values = table[column]
        if values.dtype.kind not in "fiu":
            continue
        numbers = values.to_numpy(np.float64)
        bad = np.isinf(numbers) | (np.abs(np.nan_to_num(numbers)) > FLOAT32_MAX)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: column '{column}' holds {float(numbers[first])!r} at line {first + 2} "
                f"({int(bad.sum())} such value(s)); expected finite numbers within +-{FLOAT32_MAX:.3g}"
            )


def split_target(table: pd.DataFrame, target: str, drop: tuple[str, ...], source: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(features, targets): the target column as float64 and the other columns less `drop`
    (columns in `drop` that the table lacks are ignored).

    Raises:
        DataError: no target column, or one with missing or non-numeric values.
    """
    import pandas as pd

    if target not in table.columns:
        raise DataError(
            f"{source}: has no target column '{target}' (data.target); {describe_columns(table)}"
        )
    y = pd.to_numeric(table[target], errors="coerce")
    bad = y.isna()
    if bad.any():
        rows = [int(i) + 2 for i in np.flatnonzero(bad.to_numpy())[:5]]  # +2: header, 1-based
        raise DataError(
            f"{source}: target column '{target}' has {int(bad.sum())} missing or non-numeric values "
            f"(file lines {', '.join(map(str, rows))}{', ...' if bad.sum() > 5 else ''}); expected a number in every row"
        )
    features = table.drop(columns=[target, *(c for c in drop if c in table.columns and c != target)])
    return features, y.to_numpy(np.float64)


def log_of(y: np.ndarray, source: str, target: str) -> np.ndarray:
    """log y, for targets such as prices whose relative error matters (D2L 4.10.5)."""
    if np.any(y <= 0):
        raise DataError(f"{source}: target column '{target}' must be positive to take its log, found {y.min()}")
    return np.log(y)


def describe_columns(table: pd.DataFrame) -> str:
    return f"its columns are: {_some(table.columns)}"


def _some(columns, n: int = 12) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


# -------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessor:
    """Statistics of training rows that turn any table with the same columns into features.

    `numeric` columns are standardised as (x - mean) / std, missing values then set to 0;
    each categorical column becomes one 0/1 column per category seen in training plus
    `<column>_nan` for missing values; a category not seen in training is all zeros.
    `feature_names` orders the outputs as `pd.get_dummies(dummy_na=True)` does: numeric columns,
    then each categorical column's categories (sorted) and its `_nan` column.
    """

    numeric: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    categories: tuple[tuple[str, tuple[str, ...]], ...]  # (column, its categories)

    @classmethod
    def fit(cls, table: pd.DataFrame) -> Preprocessor:
        """Fit on training rows: mean and std (ddof=1, as pandas) of each numeric column, the
        categories of the others. A constant column gets std 1 (no division by 0)."""
        numeric, mean, std, categories = [], [], [], []
        for name in table.columns:
            column = table[name]
            if _is_numeric(column):
                values = column.astype(np.float64)
                m, s = values.mean(), values.std()
                numeric.append(str(name))
                mean.append(float(m))
                std.append(float(s) if np.isfinite(s) and s > 0 else 1.0)
            else:
                seen = sorted({str(v) for v in column.dropna()})
                categories.append((str(name), tuple(seen)))
        return cls(tuple(numeric), tuple(mean), tuple(std), tuple(categories))

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = list(self.numeric)
        for column, seen in self.categories:
            names += [f"{column}_{c}" for c in seen] + [f"{column}_nan"]
        return tuple(names)

    def transform(self, table: pd.DataFrame, source: str = "table") -> np.ndarray:
        """(n, len(feature_names)) float32 features of `table`'s rows; extra columns are ignored.

        Raises:
            DataError: a column seen in fitting is absent, or a numeric one holds text.
        """
        import pandas as pd

        needed = [*self.numeric, *(c for c, _ in self.categories)]
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise DataError(f"{source}: lacks the column(s) {_some(missing)} that the training data has")
        parts = []
        if self.numeric:
            values = table[list(self.numeric)].apply(pd.to_numeric, errors="coerce")
            text = values.isna() & table[list(self.numeric)].notna()
            if text.any().any():
                col = text.any().idxmax()
                raise DataError(
                    f"{source}: column '{col}' is numeric in the training data but holds "
                    f"{table.loc[text[col], col].iloc[0]!r}"
                )
            standard = (values.to_numpy(np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
            parts.append(np.nan_to_num(standard, nan=0.0))
        for column, seen in self.categories:
            present = table[column].notna().to_numpy()
            values = table[column].astype(str).to_numpy()
            one_hot = (values[:, None] == np.asarray(seen, dtype=object)[None, :]) & present[:, None]
            parts += [one_hot, ~present[:, None]]
        if not parts:
            return np.zeros((len(table), 0), np.float32)
        return np.concatenate([np.asarray(p, np.float64) for p in parts], axis=1).astype(np.float32)


def _is_numeric(column: pd.Series) -> bool:
    """Numbers are standardised; anything else, and a column with no values at all (which
    pandas reads as float), is a category, so that other tables may hold text there."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) and not column.isna().all()


# -------------------------------------------------------------------------- data set


def csv_dataset(cfg: CSVData, seed: int):
    """A `Dataset` from a CSV (D2L 4.10): the target column (optionally its log) as (n, 1)
    float32, the other columns less `drop` preprocessed with a `Preprocessor` fitted on the
    training rows. Validation rows come from `val_file`, or else are the last `val_fraction` of
    the rows shuffled with the seed. `meta` holds the feature names and the file read.
    """
    path = locate(cfg.file, cfg.dir)
    features, y = split_target(read_table(path), cfg.target, cfg.drop, str(path))
    if cfg.val_file is not None:
        val_path = locate(cfg.val_file, cfg.dir)
        val_features, val_y = split_target(read_table(val_path), cfg.target, cfg.drop, str(val_path))
        train_features, train_y = features, y
    else:
        val_path = path
        order = np.random.default_rng([seed, 4_10]).permutation(len(y))
        num_val = int(round(cfg.val_fraction * len(y)))
        if num_val == 0 or num_val == len(y):
            raise DataError(
                f"{path}: {len(y)} rows with data.val_fraction {cfg.val_fraction} leave "
                f"{'no validation' if num_val == 0 else 'no training'} rows; change data.val_fraction "
                "or give data.val_file"
            )
        train_idx, val_idx = order[: len(y) - num_val], order[len(y) - num_val :]
        train_features, train_y = features.iloc[train_idx], y[train_idx]
        val_features, val_y = features.iloc[val_idx], y[val_idx]
    if cfg.log_target:
        train_y, val_y = log_of(train_y, str(path), cfg.target), log_of(val_y, str(val_path), cfg.target)
    pre = Preprocessor.fit(train_features)
    return Dataset(
        pre.transform(train_features, str(path)),
        train_y.astype(np.float32)[:, None],
        pre.transform(val_features, str(val_path)),
        val_y.astype(np.float32)[:, None],
        num_classes=None,
        meta={"feature_names": list(pre.feature_names), "file": str(path), "val_file": str(val_path)},
    )
