"""The Stanford Natural Language Inference corpus (D2L 15.4.1): its files and the book's reader.

`snli_1.0.zip` holds `snli_1.0/snli_1.0_{train,dev,test}.txt`, tab-separated with a header
line. Column 0 is the gold label, columns 1 and 2 the premise's and hypothesis's binary parse
trees, "( ( A man ) ( is sleeping ) )": the book's `read_snli` strips the parentheses, squeezes
runs of whitespace and drops the pairs whose label is '-' (no consensus among annotators).
The book's sizes: 549,367 training and 9,824 test pairs.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from ..errors import DataError, DataNotFoundError
from .files import RemoteFile, find_or_fetch, search_dirs

SNLI = RemoteFile("snli_1.0.zip", "https://nlp.stanford.edu/projects/snli/snli_1.0.zip",
                  "9fcde07509c7e87ec61c640c1b2753d9041758e4")
FOLDER = "snli_1.0"
LABELS = {"entailment": 0, "contradiction": 1, "neutral": 2}
LABEL_NAMES = tuple(LABELS)


def extract_text(s: str) -> str:
    """A parse tree's words: parentheses removed, two or more whitespace characters one space
    (the book's `extract_text`)."""
    s = re.sub("\\(", "", s)
    s = re.sub("\\)", "", s)
    s = re.sub("\\s{2,}", " ", s)
    return s.strip()


def parse_snli(text: str, where: str = "snli") -> tuple[list[str], list[str], list[int]]:
    """The rows after the header line -> (premises, hypotheses, labels), the rows whose label
    is not entailment, contradiction or neutral left out, as the book's `read_snli`.

    Raises:
        ValueError: a labelled row with fewer than 3 tab-separated columns, naming `where` and
        the line.
    """
    premises, hypotheses, labels = [], [], []
    for lineno, line in enumerate(text.splitlines()[1:], 2):
        row = line.split("\t")
        if row[0] not in LABELS:
            continue
        if len(row) < 3:
            raise ValueError(f"{where}:{lineno}: expected a label and two parse trees separated by tabs, "
                             f"found {len(row)} column(s)")
        premises.append(extract_text(row[1]))
        hypotheses.append(extract_text(row[2]))
        labels.append(LABELS[row[0]])
    return premises, hypotheses, labels


def snli_path(file: str | None, configured_dir: str | None) -> Path:
    """The configured zip or folder; else an extracted `snli_1.0` folder in the data
    directories; else snli_1.0.zip found or downloaded (sha1-checked)."""
    if file:
        path = Path(file).expanduser()
        if not path.exists():
            raise DataNotFoundError(f"data.file: {path} not found (expected snli_1.0.zip or the extracted "
                                    f"{FOLDER} folder holding snli_1.0_train.txt)")
        return path
    for d in search_dirs(configured_dir):
        if (d / FOLDER / "snli_1.0_train.txt").is_file():
            return d / FOLDER
    return find_or_fetch(SNLI, configured_dir)


def read_split(path: Path, split: str) -> str:
    """The text of `snli_1.0_<split>.txt` from the zip `path` (any folder inside) or the folder."""
    name = f"snli_1.0_{split}.txt"
    if path.is_dir():
        target = path / name if (path / name).is_file() else path / FOLDER / name
        if not target.is_file():
            raise DataNotFoundError(f"data.file: {path} holds no {name}")
        return target.read_text(encoding="utf-8")
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if Path(m).name == name and "__MACOSX" not in m]
            if not members:
                raise DataError(f"{path}: the archive holds no {name}")
            with zf.open(members[0]) as f:
                return io.TextIOWrapper(f, encoding="utf-8").read()
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a zip archive (expected snli_1.0.zip or the extracted {FOLDER} folder)") from None


def read_snli(path: Path, split: str) -> tuple[list[str], list[str], list[int]]:
    """(premises, hypotheses, labels) of a split, `train` or `test` (the book's `read_snli`)."""
    try:
        return parse_snli(read_split(path, split), f"{path}:snli_1.0_{split}.txt")
    except ValueError as err:
        raise DataError(str(err)) from None
