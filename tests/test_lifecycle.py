"""One run lifecycle: a trial trained inside a vectorised group leaves the run directory the same
trial leaves alone (the same files, the same summary keys, the same numbers), for a classifier,
a language model and a translation model, with and without pictures."""

import json

import numpy as np
import pytest

from dlrun.core.config import load_config, metrics
from dlrun.core.report.progress import make_reporter
from dlrun.core.sweep.groups import group_key
from dlrun.core.training.train import train
from dlrun.core.training.vectorised import train_group

from .conftest import CONFIGS
from .test_language_model import lm_config
from .test_seq2seq import TINY_MODELS, tiny_config

TIMINGS = {"wall_seconds", "train_seconds", "compile_seconds", "seconds_per_epoch", "loop", "group_size"}


def classifier(tmp_path, fake_dir, lr):
    return load_config(CONFIGS / "mlp.yaml", [f"data.dir={fake_dir}", "data.batch_size=32", "model.hidden=[16]",
                                              "trainer.epochs=2", "trainer.progress=none", f"optimizer.lr={lr}",
                                              "optimizer.schedule.name=cosine"])


def language_model(tmp_path, lr):
    return lm_config(tmp_path, optimizer={"name": "adam", "lr": lr, "clip_norm": 1.0}, trainer={"epochs": 2, "progress": "none"})


def translation(tmp_path, lr):
    return tiny_config(tmp_path, TINY_MODELS["bahdanau"], optimizer={"name": "adam", "lr": lr, "clip_norm": 1.0},
                       trainer={"epochs": 2, "progress": "none"})


def files(run_dir):
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if p.is_file() and "checkpoints" not in p.parts and p.name != ".lock")


@pytest.mark.parametrize("plot", [False, True])
@pytest.mark.parametrize("family", ["classifier", "language_model", "translation"])
def test_a_vectorised_trial_leaves_what_the_trial_alone_leaves(family, plot, tmp_path, fake_fmnist_dir):
    make = {"classifier": lambda lr: classifier(tmp_path, fake_fmnist_dir, lr),
            "language_model": lambda lr: language_model(tmp_path, lr),
            "translation": lambda lr: translation(tmp_path, lr)}[family]
    cfgs = [make(0.01), make(0.02)]
    assert len({group_key(c) for c in cfgs}) == 1
    outcomes = train_group(cfgs, [tmp_path / f"v{i}" for i in range(2)], mode="vmap", plot=plot)
    assert [o.status for o in outcomes] == ["done", "done"]
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"s{i}", plot=plot, reporter=make_reporter("none", 0, ""))
        vec, alone = tmp_path / f"v{i}", tmp_path / f"s{i}"
        assert files(vec) == files(alone)
        s_vec, s_alone = (json.loads((d / "summary.json").read_text()) for d in (vec, alone))
        assert list(s_vec) == list(s_alone)
        assert s_vec["group_size"] == 2 and s_alone["group_size"] == 1
        # what the config says a run reports (book.metric, sweep targets) is what it writes
        written = {k for k in s_alone if k.startswith(("train/", "val/"))} | {"w_norm"}
        assert metrics.reported(cfg) == written
        for k in s_alone:
            if k in TIMINGS:
                continue
            if isinstance(s_alone[k], float):
                np.testing.assert_allclose(s_vec[k], s_alone[k], rtol=2e-3, atol=1e-4, err_msg=k)
            elif k not in ("sample", "translations", "bleu"):  # decoded text may flip on float32 rounding
                assert s_vec[k] == s_alone[k], k
    if family == "language_model":
        assert "sample" in s_vec and "val/ppl" in s_vec
    if family == "translation":
        assert "bleu" in s_vec and "translations" in s_vec
        assert (tmp_path / "v0" / "attention.png").is_file() == plot
    if family == "classifier":
        assert (tmp_path / "v0" / "schedule.png").is_file() == plot
