"""Neural style transfer (D2L 13.12): the synthesised image is what is optimised."""

from __future__ import annotations

# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {}
