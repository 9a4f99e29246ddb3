"""The Kaggle image-folder workflow (D2L 13.13-13.14): split, train, predict a test folder into submission.csv."""

from __future__ import annotations

# experiment.name -> (run(cfg, run_dir, source) -> summary, options Section, summary numbers a book result may name)
EXPERIMENTS: dict = {}
