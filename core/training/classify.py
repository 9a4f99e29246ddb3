"""Classifying image files with a trained run (`dlrun predict RUN --images DIR`, and the test
folder of D2L 13.13's Kaggle workflow)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..config.image_folder import ImageFolderData
from ..data.image_folder import normalise
from ..data.images import image_paths, read_images
from ..errors import ConfigError
from .inference import predict


class Classified(NamedTuple):
    paths: tuple[Path, ...]  # the images that could be read, in sorted order
    labels: tuple[str, ...]  # the predicted class of each
    probabilities: np.ndarray  # float (n,): the softmax probability of that class
    bad: tuple[tuple[Path, str], ...]  # files left out, with why


def image_input_shape(data_cfg, input_shape) -> tuple[int, int]:
    """(side, channels) of the images a run's model takes, as its data set stores them.

    Raises:
        ConfigError: the model takes something other than square grey or RGB images.
    """
    shape = tuple(input_shape) if not isinstance(input_shape, dict) else None
    if shape is None or len(shape) != 3 or shape[0] != shape[1] or shape[2] not in (1, 3):
        raise ConfigError(f"the run's model (data: {data_cfg.name}) takes inputs of shape {input_shape}, "
                          "not square grey or RGB images")
    return shape[0], shape[2]


def classify_files(model, params, model_state, paths: Sequence[Path], data_cfg, input_shape,
                   label_names: Sequence[str], chunk: int = 4096) -> Classified:
    """Each readable file of `paths`, read as the run's data set stores its images (size, grey or
    RGB, and the image folder's normalisation), classified by the model in evaluation mode; read
    `chunk` files at a time, so that Kaggle's 300,000 test images need not be in memory at once."""
    import jax

    size, channels = image_input_shape(data_cfg, input_shape)
    kept, labels, probabilities, bad = [], [], [], []
    for start in range(0, len(paths), chunk):
        found = read_images(paths[start:start + chunk], size, channels)
        bad += found.bad
        if not len(found.images):
            continue
        x = normalise(found.images, data_cfg) if isinstance(data_cfg, ImageFolderData) else found.images
        p = np.asarray(jax.nn.softmax(predict(model, params, model_state, x), axis=-1))
        best = p.argmax(-1)
        kept += found.paths
        labels += [label_names[int(i)] for i in best]
        probabilities.append(p[np.arange(len(best)), best])
    return Classified(tuple(kept), tuple(labels), np.concatenate(probabilities) if probabilities else np.zeros(0), tuple(bad))


def classify_folder(run, directory: str | Path) -> Classified:
    """Every image under `directory` (sub-folders included, sorted by path) classified by a
    loaded run (`core.training.inference.load_run`).

    Raises:
        ConfigError: the run is not an image classifier.
        DataError: `directory` is not a directory.
    """
    from .inference import model_kind

    kind = model_kind(run.setup, run.data)
    if kind != "classifier":
        raise ConfigError(f"a {kind.replace('_', ' ')} run classifies no images")
    image_input_shape(run.cfg.data, run.data.input_shape)  # refuse before reading any file
    names = run.data.label_names or tuple(str(i) for i in range(run.data.num_classes or 0))
    return classify_files(run.setup.model, run.state.params, run.state.model_state, image_paths(directory),
                          run.cfg.data, run.data.input_shape, names)


def classified_csv(result: Classified) -> str:
    """path,label,probability lines under a header, as `--out FILE.csv` writes them."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("path", "label", "probability"))
    for path, label, p in zip(result.paths, result.labels, result.probabilities):
        writer.writerow((str(path), label, f"{p:.6f}"))
    return out.getvalue()
