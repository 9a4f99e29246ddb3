"""Fine-tuning (D2L 13.2): a run from another run's parameters against the same model from scratch."""

from __future__ import annotations

# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {}
