"""Pretrained word vectors as a text model's embedding table (D2L 15.2.2, 15.3.2).

A table of one row per token of the data's vocabulary (`BatchSpec.vocab`), each the word's
pretrained vector, zeros for a word the vectors lack (d2l's `TokenEmbedding` gives unknown
tokens its zero `<unk>` vector). The vectors come from a GloVe or fastText text file
(`core.nn.embeddings.read_text_vectors`), or from a dlrun word2vec run: its params.npz holds the
centre vectors `params/embed_v/w`, and its words are its data's vocabulary, which this module
reloads from the run's config.yaml through the data registry, since params.npz keeps arrays
only. Reading the run's files here, rather than through the training package's `load_run`,
keeps the model builders free of the training code (which depends on them).

`embedding_layer` is the layer such a table (or a random one) sits in: trained, its table is a
parameter; frozen, it lives in the model state, which the optimizer never sees (the book sets
requires_grad False), so it has no gradient, no optimizer moments and no weight decay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from ..data.files import search_dirs
from ..errors import ConfigError, DataError, DataNotFoundError
from .embeddings import WordVectors, read_text_vectors
from .init import normal_init
from .layers import Layer

GLOVE_FOLDER_FILE = "vec.txt"  # what d2l's glove.6b.100d.zip extracts its vectors to
GLOVE_100D_URL = "http://d2l-data.s3-accelerate.amazonaws.com/glove.6B.100d.zip"  # the book's 100-d GloVe
WORD2VEC_TABLE = "params/embed_v/w"  # a skip-gram run's centre vectors in its params.npz


def vectors_path(name: str | Path) -> Path:
    """The vectors file `name` names: the path itself, or a relative one in the data
    directories (`core.data.files.search_dirs`: $DLRUN_DATA_DIR, the cache); a folder stands
    for its vec.txt (d2l's glove.6B.100d). Never downloaded: GloVe is large and optional.

    Raises:
        DataNotFoundError: found nowhere, with the places looked in.
    """
    name = Path(name).expanduser()
    candidates = [name] + ([d / name for d in search_dirs()] if not name.is_absolute() else [])
    for path in candidates:
        path = path / GLOVE_FOLDER_FILE if path.is_dir() else path
        if path.is_file():
            return path
    looked = "\n".join(f"  {p}" for p in candidates)
    raise DataNotFoundError(f"model.embedding.file: {name} not found; looked in:\n{looked}\nexpected a GloVe or fastText "
                            f".txt file, or a folder holding {GLOVE_FOLDER_FILE} (d2l's {GLOVE_100D_URL}, extracted)")


def file_vectors(name: str | Path) -> WordVectors:
    """A GloVe/fastText text file's vectors, or those of d2l's glove folder (its vec.txt).

    Raises:
        DataNotFoundError: no such file; DataError: a malformed line.
    """
    path = vectors_path(name)
    try:
        return read_text_vectors(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"model.embedding.file: {err}") from None


def run_vectors(run_dir: str | Path) -> WordVectors:
    """A word2vec run's centre vectors with its data's vocabulary.

    Raises:
        ConfigError: not a run directory, or one whose params.npz holds no skip-gram table.
    """
    from ..config import load_config  # a run's config: the schema, which imports no model code
    from ..data import load_dataset

    run_dir = Path(run_dir).expanduser()
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "params.npz").is_file():
        raise ConfigError(f"model.embedding.run: {run_dir} is not a finished run directory (config.yaml and params.npz)")
    with np.load(run_dir / "params.npz", allow_pickle=False) as arrays:
        if WORD2VEC_TABLE not in arrays:
            raise ConfigError(f"model.embedding.run: {run_dir}/params.npz has no {WORD2VEC_TABLE} (not a skip_gram run)")
        table = arrays[WORD2VEC_TABLE]
    cfg = load_config(run_dir / "config.yaml")
    vocab = load_dataset(cfg.data, cfg.seed).meta.get("vocab")
    if vocab is None or len(vocab) != len(table):
        raise ConfigError(f"model.embedding.run: {run_dir}'s data gives {0 if vocab is None else len(vocab)} words "
                          f"for {len(table)} vectors")
    return WordVectors(vocab, table)


def lookup(vectors: WordVectors, tokens: Sequence[str]) -> np.ndarray:
    """(len(tokens), dims) float32: each token's vector, zeros for one the vectors lack."""
    table = np.zeros((len(tokens), vectors.W.shape[1]), np.float32)
    for i, token in enumerate(tokens):
        j = vectors.index.get(token)
        if j is not None:
            table[i] = vectors.W[j]
    return table


def pretrained_table(cfg, vocab: Sequence[str] | None, embed_size: int) -> np.ndarray:
    """The table for `cfg` (a `PretrainedVectors` section) over `vocab`, (len(vocab), embed_size).

    Raises:
        ConfigError: data without a vocabulary, or vectors of another size than `embed_size`.
    """
    if vocab is None:
        raise ConfigError("model.embedding: pretrained vectors are looked up by word, and this data has no vocabulary")
    vectors = file_vectors(cfg.file) if cfg.file is not None else run_vectors(cfg.run)
    dims = vectors.W.shape[1]
    if dims != embed_size:
        raise ConfigError(f"model.embedding: the vectors have {dims} dimensions but model.embed_size is {embed_size}")
    return lookup(vectors, vocab)


def embedding_layer(num_tokens: int, features: int, table: np.ndarray | None = None, frozen: bool = False,
                    kind: str = "embed") -> Layer:
    """Token ids (batch, steps) -> rows of a (num_tokens, features) table (batch, steps, features):
    `table` when given, else N(0, 1) draws (PyTorch's nn.Embedding default). Frozen, the table
    is the layer's model state `w` and gets no update; else its parameter `w`."""
    if table is not None and table.shape != (num_tokens, features):
        raise ValueError(f"an embedding of {num_tokens} x {features} given a table of shape {table.shape}")
    draw = normal_init(1.0)

    def init(key, in_shape):
        w = jnp.asarray(table, jnp.float32) if table is not None else draw(key, (num_tokens, features), jnp.float32)
        return (*in_shape, features), ({} if frozen else {"w": w}), ({"w": w} if frozen else {})

    def apply(params, state, x, *, train=False, key=None):
        # ids as int32: a summary traces the model on a float example
        return jnp.take(state["w"] if frozen else params["w"], x.astype(jnp.int32), axis=0), state

    return Layer(kind, init, apply)
