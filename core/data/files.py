"""Where data files live, and how a missing one is fetched (with a sha1 check) or asked for.

Search order for a file: the directory named in the config, `$DLRUN_DATA_DIR`, the user cache
(`$XDG_CACHE_HOME/dlrun` or `~/.cache/dlrun`), then any system directories the data set names
(Debian's `/usr/share/datasets/...`). A file found nowhere is downloaded into the cache from its
canonical URL, unless `DLRUN_OFFLINE=1` or the network is unreachable; then the error says where
to put it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import disk
from ..errors import DataNotFoundError


@dataclass(frozen=True)
class RemoteFile:
    """A data file: its name, where it can be downloaded, and its sha1.

    `sha1_of_content`: the hash is of the gunzipped bytes, so that re-compressed copies (Debian's)
    and the original download both verify. `member`: the URL is a zip archive (its sha1 is
    `sha1`) and the file is this member of it, extracted to `name`.
    """

    name: str
    url: str
    sha1: str
    sha1_of_content: bool = False
    member: str | None = None


def search_dirs(configured: str | Path | None = None, system: tuple[str, ...] = ()) -> list[Path]:
    dirs = []
    if configured:
        dirs.append(Path(configured).expanduser())
    if os.environ.get("DLRUN_DATA_DIR"):
        dirs.append(Path(os.environ["DLRUN_DATA_DIR"]).expanduser())
    dirs.append(cache_dir())
    dirs.extend(Path(d) for d in system)
    return dirs


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dlrun"


def find_or_fetch(
    remote: RemoteFile, configured: str | Path | None = None, system: tuple[str, ...] = (), hint: str = ""
) -> Path:
    """Return the path of `remote`'s file, downloading it into the cache if it is nowhere yet."""
    dirs = search_dirs(configured, system)
    for d in dirs:
        if (d / remote.name).is_file():
            return d / remote.name
    offline = os.environ.get("DLRUN_OFFLINE", "") not in ("", "0")
    reason = "DLRUN_OFFLINE is set" if offline else ""
    if not offline:
        try:
            return download(remote, cache_dir())
        except (urllib.error.URLError, OSError) as err:
            reason = f"download from {remote.url} failed: {err}"
    looked = "\n".join(f"  {d}" for d in dirs)
    raise DataNotFoundError(
        f"data file {remote.name} not found; looked in:\n{looked}\n"
        f"and could not download it ({reason}).\n"
        f"Download {remote.url} (sha1 {remote.sha1}) and put it in one of those directories, "
        f"or point DLRUN_DATA_DIR at the directory that holds it.{hint}"
    )


def download(remote: RemoteFile, into: Path, timeout: float = 60) -> Path:
    """Download to a temporary file in `into`, verify the sha1, then rename into place."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / remote.name
    target.parent.mkdir(parents=True, exist_ok=True)
    with disk.temporary_beside(into / Path(remote.name).name, suffix=".part") as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        found = sha1_of(tmp, remote.sha1_of_content)
        if found != remote.sha1:
            raise OSError(f"sha1 mismatch for {remote.url}: expected {remote.sha1}, got {found}")
        if remote.member:
            return extract(tmp, remote.member, target)
        disk.publish(tmp, target)
        return target


def extract(archive: Path, member: str, target: Path) -> Path:
    """Copy `member` of the zip `archive` to `target` through a temporary file and a rename."""
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, disk.atomic_file(target, suffix=".part") as out:
            shutil.copyfileobj(src, out)
        return target
    except KeyError as err:
        raise OSError(f"{archive}: the archive has no member {member}") from err


def sha1_of(path: Path, of_content: bool = False) -> str:
    data = path.read_bytes()
    if of_content and path.suffix == ".gz":
        data = gzip.decompress(data)
    return hashlib.sha1(data).hexdigest()


def cached_array(source: Path, decode: Callable[[Path], np.ndarray], kind: str) -> np.ndarray:
    """`decode(source)`, kept as a .npy in `<cache>/arrays/` under the sha1 of the source's bytes,
    so that a file is parsed once: a changed file has another key. DLRUN_DATA_CACHE=off turns
    it off; a damaged entry is decoded again."""
    if os.environ.get("DLRUN_DATA_CACHE", "").strip().lower() in ("off", "0", "false", "no"):
        return decode(source)
    target = cache_dir() / "arrays" / f"{source.name}.{kind}.{sha1_of(source)}.npy"
    if target.is_file():
        try:
            return np.load(target, allow_pickle=False)
        except (OSError, ValueError):
            pass
    array = decode(source)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with disk.atomic_file(target, suffix=".part") as f:
            np.save(f, array, allow_pickle=False)
    except OSError:
        pass  # a read-only cache: decoding each time is slower, not wrong
    return array
