"""JAX's persistent compilation cache, on by default: a second run of the same model loads its
compiled programs from disk instead of compiling them again.

The cache lives in `<user cache>/dlrun/jax` (`$XDG_CACHE_HOME`, else `~/.cache`), or in
`$DLRUN_COMPILE_CACHE`; `DLRUN_COMPILE_CACHE=off` turns it off. Only programs that took at least
`MIN_COMPILE_SECONDS` to compile are kept (all of them: the many small programs of a short run add up to a second). The cached
program is the one XLA compiled, so results do not change (tests/test_compile_cache.py).
"""

from __future__ import annotations

import os
from pathlib import Path

MIN_COMPILE_SECONDS = 0.0
_OFF = ("off", "0", "false", "no", "")


def cache_path() -> Path | None:
    """Where compiled programs are kept; None when the cache is off."""
    configured = os.environ.get("DLRUN_COMPILE_CACHE")
    if configured is not None:
        return None if configured.strip().lower() in _OFF else Path(configured).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "dlrun" / "jax"


def enable() -> Path | None:
    """Point JAX at the cache (idempotent; before the first compilation it matters for)."""
    import jax

    path = cache_path()
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if jax.config.jax_compilation_cache_dir != str(path):
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
