"""Training: the run set-up built from a config (`setup`), the pure step, epoch and evaluation
functions (`steps`, `state`), optimizers and schedules by name (`optimizers`), compiled programs
for one run or a vectorised group (`program`, `vectorised`), the one epoch loop (`loop`),
checkpoints (`checkpoint`), and `train(cfg, run_dir)` (`train`)."""
