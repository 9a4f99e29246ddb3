"""vocab.json: the tokens by id of a run that reads text, kept in its run directory, so that a
run fine-tuned from it reads its inputs with the same ids (D2L 15.7) and a tool can decode them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .. import disk
from ..errors import ConfigError

VOCAB_FILE = "vocab.json"


def save_vocab(run_dir: str | Path, vocab: Sequence[str]) -> None:
    disk.write_atomic(Path(run_dir) / VOCAB_FILE, json.dumps(list(vocab), ensure_ascii=False) + "\n")


def load_vocab(run_dir: str | Path, source: str) -> list[str]:
    """The tokens by id that a finished run on text kept.

    Raises:
        ConfigError: no vocab.json there (naming `source`, the key that gave the directory), or
            one that is not a list of distinct tokens.
    """
    path = Path(run_dir).expanduser() / VOCAB_FILE
    if not path.is_file():
        raise ConfigError(f"{source}: {run_dir} holds no {VOCAB_FILE} (expected the directory of a finished run on text)")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{source}: {path} cannot be read ({err})") from None
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab) or len(set(vocab)) != len(vocab):
        raise ConfigError(f"{source}: {path} is not a list of distinct tokens")
    return vocab
