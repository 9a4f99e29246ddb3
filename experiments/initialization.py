"""Placeholder: this experiment is being written."""


def run(cfg, run_dir, source="config"):
    raise NotImplementedError("initialization is being written")
