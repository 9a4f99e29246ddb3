"""Image augmentation (D2L 13.1): the book's demos on a photo, training with and without."""

from __future__ import annotations

# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {}
