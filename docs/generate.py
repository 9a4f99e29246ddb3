"""Write docs/config-reference.md from the config schema and the experiments' options.

    python docs/generate.py            # rewrite the page
    python docs/generate.py --check    # exit 1 if the page differs from what the schema gives

The page is `dlrun.core.config.reference.config_reference`'s output; this script only adds the
experiments (which `core` never imports) and the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlrun.core.config.reference import config_reference

PAGE = Path(__file__).resolve().parent / "config-reference.md"


def reference() -> str:
    """The page as the schema and the experiments' registry give it now."""
    from dlrun.experiments import EXPERIMENTS

    return config_reference({name: e.options for name, e in EXPERIMENTS.items()})


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the page; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale; write nothing")
    parser.add_argument("--out", type=Path, default=PAGE, help=f"the page (default: {PAGE})")
    args = parser.parse_args(argv)
    text = reference()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            print(f"{args.out} is stale: run python docs/generate.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
