"""The data sets by name: `DATASETS[cfg.name]` loads the data a config's `data:` section names."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .airfoil import airfoil
from .bert_pretrain import BERT_SOURCES
from .cifar10 import cifar10
from .dataset import Dataset
from .detection import DETECTION_SOURCES
from .fashion_mnist import fashion_mnist
from .gan_images import gan_images
from .image_folder import IMAGE_FOLDER_SOURCES
from .nli import NLI_SOURCES
from .recommend import ctr, movielens, movielens_ranking
from .segmentation import SEGMENTATION_SOURCES
from .sentiment import SENTIMENT_SOURCES
from .synthetic import gan_gaussian, polynomial, sine, synthetic_regression
from .tabular import csv_dataset
from .text import time_machine
from .translation import fra_eng
from .word2vec import WORD2VEC_SOURCES


class DataSource(NamedTuple):
    """How to load a data set, and whether it depends on the seed (synthetic draws and random
    validation splits do; a fixed file does not, so trials of a sweep can share one copy)."""

    load: Callable[[Any, int], Dataset]
    seeded: bool


DATASETS: dict[str, DataSource] = {
    "synthetic_regression": DataSource(synthetic_regression, seeded=True),
    "polynomial": DataSource(polynomial, seeded=True),
    "sine": DataSource(sine, seeded=True),
    "fashion_mnist": DataSource(fashion_mnist, seeded=False),
    "cifar10": DataSource(cifar10, seeded=False),
    "csv": DataSource(csv_dataset, seeded=True),
    "airfoil": DataSource(airfoil, seeded=False),  # the validation rows are drawn with the seed
    "time_machine": DataSource(time_machine, seeded=False),
    "fra_eng": DataSource(fra_eng, seeded=False),
    "gan_gaussian": DataSource(gan_gaussian, seeded=True),
    "gan_images": DataSource(gan_images, seeded=False),
    "movielens": DataSource(movielens, seeded=True),  # a random split, or generated ratings
    "movielens_ranking": DataSource(movielens_ranking, seeded=True),
    "ctr": DataSource(ctr, seeded=True),  # a generated file is drawn with the seed
    # chapters 13-15's families: each module's own table of (load, seeded)
    **{name: DataSource(*source) for name, source in {**IMAGE_FOLDER_SOURCES, **DETECTION_SOURCES, **SEGMENTATION_SOURCES,
                                                            **WORD2VEC_SOURCES, **SENTIMENT_SOURCES, **NLI_SOURCES,
                                                            **BERT_SOURCES}.items()},
}


def load_dataset(cfg, seed: int) -> Dataset:
    """The data set `cfg` (a data section) describes, drawn with `seed` where that matters."""
    return DATASETS[cfg.name].load(cfg, seed)
