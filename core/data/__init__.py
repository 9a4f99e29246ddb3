"""Data sets: `Dataset` (host arrays), the loaders by name (`registry.DATASETS`), and where data
files are found or fetched (`files`)."""

from ..errors import DataError, DataNotFoundError
from .dataset import Dataset
from .registry import DATASETS, DataSource, load_dataset

__all__ = ["DATASETS", "DataError", "DataNotFoundError", "DataSource", "Dataset", "load_dataset"]
