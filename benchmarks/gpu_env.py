"""What the GPU check runs on: dlrun and its dependencies (installed from a wheelhouse on a device
machine, which has JAX with CUDA and PyTorch but not the rest), where that dlrun comes from, and
the device with the precision settings its float32 figures ran under. Only the standard library
is imported here before `require` has run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("jax", "optax", "pydantic", "yaml", "typer", "rich", "pandas", "matplotlib", "PIL", "dlrun")


def require(wheels: Path | None) -> None:
    """Install dlrun from `wheels` if given (its dependencies, then the dlrun wheel itself afresh,
    so that an older copy cannot stay); exit naming any module that still cannot be imported."""
    if wheels is not None:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels)]
        afresh = [*pip, "--no-deps", "--force-reinstall", "dlrun"]
        if subprocess.run([*pip, "dlrun"]).returncode or subprocess.run(afresh).returncode:
            sys.exit(f"gpu_check: pip could not install dlrun from {wheels} (its message is above)")
        importlib.invalidate_caches()
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    try:
        import dlrun.core.training.setup  # noqa: F401 - everything the check imports, and what that imports
    except ModuleNotFoundError as err:
        missing.append(err.name)
    if missing:
        sys.exit(f"gpu_check: cannot import {', '.join(dict.fromkeys(missing))}. Install dlrun and its dependencies "
                 "(not jax, jaxlib or torch) from a wheelhouse: `--wheels DIR`, built as this script's docstring says.")


def dlrun_source() -> str:
    """Where the dlrun being checked comes from: this checkout, or an installed copy and whether
    its files are this checkout's (a wheel built before the last change is not)."""
    import dlrun.core

    if Path(dlrun.core.__file__).resolve().parent == ROOT / "core":
        return "this checkout"
    installed = Path(dlrun.__file__).resolve().parent
    # the checkout's package directories, by the package names pyproject.toml gives them
    dirs = {"api": installed, "core": installed / "core", "cli": installed / "cli", "experiments": installed / "experiments"}
    differ = [str(f.relative_to(ROOT)) for d, there in dirs.items() for f in sorted((ROOT / d).rglob("*.py"))
              if not (there / f.relative_to(ROOT / d)).is_file()
              or (there / f.relative_to(ROOT / d)).read_bytes() != f.read_bytes()]
    if differ:
        print(f"warning: the installed dlrun ({installed}) differs from this checkout in {len(differ)} files "
              f"({', '.join(differ[:5])}{', ...' if len(differ) > 5 else ''}): rebuild the wheelhouse's dlrun wheel", flush=True)
        return f"installed at {installed}; {len(differ)} files differ from this checkout: {', '.join(differ)}"
    return f"installed at {installed}, the same files as this checkout"


def environment() -> dict:
    """The device and the precision settings the float32 rows ran under."""
    import jax

    d = jax.devices()[0]
    env = {"backend": jax.default_backend(), "kind": d.device_kind, "count": jax.device_count(),
           "jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
    if importlib.util.find_spec("torch") is not None:
        import gpu_torch

        env |= gpu_torch.environment()
    return env
