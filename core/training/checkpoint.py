"""Checkpoints: the whole training state, written atomically, loaded without executing code.

A checkpoint is a directory `checkpoints/epoch_EEEE[_bBBBB]/` holding
- `arrays.npz`: every leaf of the `TrainState` pytree (params, optimizer state, model state,
  step) and the run's RNG keys, as plain arrays (NumPy's format, loaded with allow_pickle=False);
- `meta.json`: the position in the data order (epoch, batches done in it), the per-epoch metric
  rows so far (full precision, so a resumed run rewrites metrics.csv exactly), the partial
  epoch's per-batch metrics, and the resolved config.
The tree structure is not stored: it is rebuilt from the config (the same model and optimizer
give the same structure) and every array's shape and dtype is checked against it. That is why
a format this simple serves as well as Orbax here: one host, one process, small pytrees.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from ..disk import shareable
from ..errors import CheckpointError

FORMAT = 1



class Position(NamedTuple):
    epoch: int  # epochs finished
    batch: int = 0  # batches of epoch + 1 finished (only the per-step loop stops mid-epoch)


class Checkpoint(NamedTuple):
    state: Any
    keys: dict[str, np.ndarray]
    position: Position
    rows: list[dict[str, Any]]
    partial: list[dict[str, float]]  # per-batch metrics of the unfinished epoch
    config_yaml: str
    path: Path


def save(
    directory: Path,
    state: Any,
    keys: dict[str, Any],
    position: Position,
    rows: list[dict[str, Any]],
    partial: list[dict[str, float]],
    config_yaml: str,
    keep: int,
) -> Path:
    """Write a checkpoint into a temporary directory, rename it into place, prune to `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"epoch_{position.epoch:04d}" + (f"_b{position.batch:05d}" if position.batch else "")
    leaves = jax.device_get(jax.tree_util.tree_leaves(state))
    arrays = {f"state_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays |= {f"key_{k}": np.asarray(jax.random.key_data(v) if _is_typed_key(v) else v) for k, v in keys.items()}
    meta = {
        "format": FORMAT,
        "epoch": position.epoch,
        "batch": position.batch,
        "num_state_arrays": len(leaves),
        "rows": rows,
        "partial": partial,
        "config": config_yaml,
    }
    remove_temporary(directory)  # left by a run killed while it wrote one
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}."))
    try:
        with open(tmp / "arrays.npz", "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        meta["sha256"] = _sha256(tmp / "arrays.npz")  # a flipped bit is found on loading
        (tmp / "meta.json").write_text(json.dumps(meta))
        shareable(tmp, directory=True)  # mkdtemp makes it 0700 whatever the umask
        target = directory / name
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


_NAME = re.compile(r"^epoch_(\d+)(?:_b(\d+))?$")


def position_of(path: Path) -> tuple[int, int] | None:
    """(epoch, batch) from a checkpoint's name, `epoch_0003` or `epoch_0003_b00012`; None otherwise."""
    match = _NAME.match(path.name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def list_checkpoints(directory: Path) -> list[Path]:
    """Finished checkpoints, oldest first, ordered by their numbers (past epoch 9999 the names
    no longer sort; temporary directories start with '.')."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and position_of(p) is not None]
    return sorted(found, key=position_of)


def remove_temporary(directory: Path) -> None:
    """Delete the temporary directories of checkpoints whose writing never finished."""
    if directory.is_dir():
        for p in directory.glob(".epoch_*"):
            shutil.rmtree(p, ignore_errors=True)


def load_latest(directory: Path, template_state: Any, warn=None) -> Checkpoint:
    """Load the newest good checkpoint in `directory` onto the structure of `template_state`. A
    damaged one is skipped for the one before it, and `warn(message)` hears which and why.

    Raises:
        CheckpointError: no checkpoint, or none that is whole (the message lists each problem).
    """
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"{directory}: no checkpoint to resume from")
    problems = []
    for path in reversed(found):
        try:
            checkpoint = load(path, template_state)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems and warn is not None:
            warn(f"skipped {len(problems)} damaged checkpoint(s), resuming from {path.name}: " + "; ".join(problems))
        return checkpoint
    raise CheckpointError(f"{directory}: no good checkpoint to resume from: " + "; ".join(problems))


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# meta.json's keys and the types they must have
_META = {"format": int, "epoch": int, "batch": int, "num_state_arrays": int, "rows": list, "partial": list, "config": str}


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path / 'meta.json'}: unreadable ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path / 'meta.json'}: expected a JSON object, found {type(meta).__name__}")
    for key, kind in _META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{path / 'meta.json'}: {key}: expected {kind.__name__}, found {meta.get(key)!r:.60}")
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta['format']}, expected {FORMAT}")
    if (meta["epoch"], meta["batch"]) != position_of(path) or len(meta["rows"]) != meta["epoch"]:
        raise CheckpointError(f"{path / 'meta.json'}: says epoch {meta['epoch']}, batch {meta['batch']} with "
                              f"{len(meta['rows'])} metric rows, which does not fit its name {path.name}")
    if not all(isinstance(r, dict) for r in meta["rows"] + meta["partial"]):
        raise CheckpointError(f"{path / 'meta.json'}: rows: expected one object per epoch")
    return meta


def load(path: Path, template_state: Any) -> Checkpoint:
    """One checkpoint, every part of it checked: meta.json's keys and types, the arrays' checksum,
    shapes and dtypes.

    Raises:
        CheckpointError: anything damaged, missing or not fitting the config.
    """
    meta = _read_meta(path)
    if "sha256" in meta and (not (path / "arrays.npz").is_file() or _sha256(path / "arrays.npz") != meta["sha256"]):
        raise CheckpointError(f"{path / 'arrays.npz'}: damaged (its checksum differs from the one in meta.json)")
    try:
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # noqa: BLE001 - a truncated or garbled file fails in zipfile, zlib or numpy
        raise CheckpointError(f"{path / 'arrays.npz'}: unreadable ({type(err).__name__}: {err})") from None
    leaves, treedef = jax.tree_util.tree_flatten(template_state)
    if meta["num_state_arrays"] != len(leaves):
        raise CheckpointError(
            f"{path}: holds {meta['num_state_arrays']} state arrays but the config's model and optimizer have {len(leaves)}"
        )
    restored = []
    for i, leaf in enumerate(leaves):
        if f"state_{i:04d}" not in arrays:
            raise CheckpointError(f"{path / 'arrays.npz'}: state array {i} is missing")
        saved = arrays[f"state_{i:04d}"]
        if saved.shape != np.shape(leaf) or saved.dtype != np.asarray(leaf).dtype:
            raise CheckpointError(
                f"{path}: state array {i} is {saved.dtype}{list(saved.shape)}, the config expects "
                f"{np.asarray(leaf).dtype}{list(np.shape(leaf))}"
            )
        restored.append(saved)
    keys = {k.removeprefix("key_"): v for k, v in arrays.items() if k.startswith("key_")}
    return Checkpoint(
        state=jax.tree_util.tree_unflatten(treedef, restored),
        keys=keys,
        position=Position(meta["epoch"], meta["batch"]),
        rows=meta["rows"],
        partial=meta["partial"],
        config_yaml=meta["config"],
        path=path,
    )


def _is_typed_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
