"""Tracking (trainer.log_to): TensorBoard event files and MLflow runs read back with the tools'
own readers equal metrics.csv; sweeps give HParams sessions and nested MLflow runs; a tracker
that fails warns once and never stops the training."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import ConfigError, flatten, load_config
from dlrun.core.errors import TrainingDiverged, TrainingInterrupted
from dlrun.core.report.tracking import Tracking, read_record
from dlrun.core.training.train import resume_config
from dlrun.experiments import run_config

from .conftest import CONFIGS

SPE = 100  # linreg: 1000 examples in batches of 10


def linreg(*overrides):
    return load_config(CONFIGS / "linreg.yaml", ["trainer.progress=none", *overrides])


def metrics_csv(run_dir):
    return pd.read_csv(run_dir / "metrics.csv")


# ----------------------------------------------------------------------------- the guard


class Sink:
    def __init__(self, name, fail_at=None):
        self.name, self.fail_at, self.epochs, self.closed, self.abandoned = name, fail_at, [], None, False

    def epoch(self, epoch, values, steps, first_step):
        if epoch == self.fail_at:
            raise OSError(28, "No space left on device")
        self.epochs.append(epoch)

    def close(self, status):
        self.closed = status

    def abandon(self):
        self.abandoned = True


def test_a_failing_sink_warns_once_and_the_others_go_on():
    warnings = []
    bad, good = Sink("tensorboard", fail_at=2), Sink("mlflow")
    tracking = Tracking([bad, good], warn=warnings.append)
    for epoch in (1, 2, 3, 4):
        tracking.epoch({"epoch": epoch, "train/loss": 1.0 / epoch}, {"loss": np.ones(3)}, 3)
    tracking.close("done")
    tracking.close("failed")  # a second close does nothing
    assert bad.epochs == [1] and bad.abandoned and bad.closed is None
    assert good.epochs == [1, 2, 3, 4] and good.closed == "done"
    assert len(warnings) == 1
    assert "tensorboard tracking failed while logging epoch 2" in warnings[0] and "No space left" in warnings[0]


@pytest.mark.parametrize("exc, status", [(None, "done"), (TrainingInterrupted("x"), "interrupted"),
                                         (KeyboardInterrupt(), "interrupted"), (TrainingDiverged("x"), "diverged"),
                                         (ValueError("x"), "failed")])
def test_leaving_the_run_closes_with_how_it_ended(exc, status):
    sink = Sink("s")
    with pytest.raises(type(exc)) if exc else _nothing():
        with Tracking([sink]):
            if exc:
                raise exc
    assert sink.closed == status


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_log_to_is_validated_and_may_change_on_resume(tmp_path):
    with pytest.raises(ConfigError, match="log_to"):
        linreg("trainer.log_to=[wandb]")
    with pytest.raises(ConfigError, match="twice"):
        linreg("trainer.log_to=[tensorboard, tensorboard]")
    run_config(linreg("trainer.epochs=1"), tmp_path / "run")
    cfg = resume_config(tmp_path / "run", ["trainer.epochs=2", "trainer.log_to=[tensorboard]", "trainer.mlflow_uri=x"])
    assert cfg.trainer.log_to == ("tensorboard",)


def test_a_missing_library_warns_and_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    summary = run_config(linreg("trainer.log_to=[tensorboard]"), tmp_path / "run")
    err = capsys.readouterr().err
    assert "tensorboard tracking is not installed" in err and "pip install 'dlrun[tensorboard]'" in err
    assert summary["epochs"] == 3 and not (tmp_path / "run" / "tb").exists()


# ----------------------------------------------------------------------------- TensorBoard


def scalars(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_equal_metrics_csv(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    cfg = linreg("trainer.epochs=4", "trainer.log_to=[tensorboard]", "optimizer.schedule.name=step",
                 "optimizer.schedule.gamma=0.5")
    run_config(cfg, tmp_path / "run")
    acc, tb = scalars(tmp_path / "run" / "tb")
    df = metrics_csv(tmp_path / "run")
    for column in ("train/loss", "val/loss", "examples", "seconds"):
        assert [s for s, _ in tb[column]] == list(df["epoch"])
        np.testing.assert_allclose([v for _, v in tb[column]], df[column], rtol=1e-6)  # float32 in the file
    # per step: every update once, and the epoch's mean is metrics.csv's train/loss
    steps = tb["step/loss"]
    assert [s for s, _ in steps] == list(range(1, 4 * SPE + 1))
    per_epoch = np.asarray([v for _, v in steps]).reshape(4, SPE).mean(axis=1)
    np.testing.assert_allclose(per_epoch, df["train/loss"], rtol=1e-5)
    # the learning rate: 0.03 x 0.5^floor(t / steps per epoch), the step schedule's closed form
    t = np.arange(4 * SPE)
    np.testing.assert_allclose([v for _, v in tb["step/lr"]], 0.03 * 0.5 ** (t // SPE), rtol=1e-6)
    np.testing.assert_allclose([v for _, v in tb["train/lr"]], 0.03 * 0.5 ** np.arange(4), rtol=1e-6)
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: linreg" in text and "gamma: 0.5" in text


def test_a_resumed_run_continues_its_event_files(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    run_config(linreg("trainer.epochs=4", "trainer.log_to=[tensorboard]"), run_dir, stop_epoch=2)
    run_config(resume_config(run_dir), run_dir, resume=True)
    _, tb = scalars(run_dir / "tb")
    df = metrics_csv(run_dir)
    assert [s for s, _ in tb["val/loss"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in tb["val/loss"]], df["val/loss"], rtol=1e-6)


def test_a_sweep_writes_hparams_sessions(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    result = CliRunner().invoke(app, ["sweep", str(CONFIGS / "linreg.yaml"), "--grid", "optimizer.lr=0.01,0.03",
                                      "--set", "trainer.epochs=2", "--log-to", "tensorboard", "--out", str(tmp_path / "sw")])
    assert result.exit_code == 0, result.output
    trials = sorted((tmp_path / "sw" / "trials").iterdir())
    assert len(trials) == 2
    for trial, lr in zip(trials, (0.01, 0.03)):
        acc, tb = scalars(trial / "tb")
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["optimizer.lr"].number_value == pytest.approx(lr)
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        assert {m.name.tag for m in experiment.metric_infos} >= {"val/loss"}
        assert "_hparams_/session_end_info" in content
        np.testing.assert_allclose([v for _, v in tb["val/loss"]], metrics_csv(trial)["val/loss"], rtol=1e-6)


# ----------------------------------------------------------------------------- MLflow


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    pytest.importorskip("mlflow")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def mlflow_runs(uri, experiment):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    mlflow.set_tracking_uri(uri)
    return client, mlflow.search_runs(experiment_ids=[found.experiment_id])


def check_mlflow_run(client, run_id, run_dir, files=("config.yaml", "metrics.csv", "summary.json", "curves.png")):
    """Every epoch's metrics, the flattened config and the run's files, read back."""
    df = metrics_csv(run_dir)
    for column in ("train/loss", "val/loss", "examples"):
        history = sorted(client.get_metric_history(run_id, column), key=lambda m: m.step)
        assert [m.step for m in history] == list(df["epoch"])
        np.testing.assert_allclose([m.value for m in history], df[column], rtol=1e-7)  # the CSV keeps 8 digits
    params = client.get_run(run_id).data.params
    config = flatten(json.loads(json.dumps(load_config(run_dir / "config.yaml").model_dump(mode="json"))))
    assert params["optimizer.lr"] == str(config["optimizer.lr"]) and params["data.batch_size"] == "10"
    assert set(params) == set(config)
    artifacts = {f.path for f in client.list_artifacts(run_id)}
    assert set(files) <= artifacts
    assert "tracking.json" not in artifacts


def test_mlflow_run_equals_metrics_csv(tmp_path, sqlite_store):
    cfg = linreg("name=mlflow_single", "trainer.log_to=[mlflow]", f"trainer.mlflow_uri={sqlite_store}")
    run_config(cfg, tmp_path / "run")
    client, runs = mlflow_runs(sqlite_store, "mlflow_single")
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    run_id = runs.loc[0, "run_id"]
    assert read_record(tmp_path / "run")["mlflow"]["run_id"] == run_id
    check_mlflow_run(client, run_id, tmp_path / "run")
    assert runs.loc[0, "metrics.val/loss"] == pytest.approx(metrics_csv(tmp_path / "run")["val/loss"].iloc[-1], rel=1e-7)


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, sqlite_store):
    run_dir = tmp_path / "run"
    cfg = linreg("name=mlflow_resumed", "trainer.epochs=4", "trainer.log_to=[mlflow]", f"trainer.mlflow_uri={sqlite_store}")
    run_config(cfg, run_dir, stop_epoch=2)
    run_config(resume_config(run_dir), run_dir, resume=True)
    client, runs = mlflow_runs(sqlite_store, "mlflow_resumed")
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    check_mlflow_run(client, runs.loc[0, "run_id"], run_dir)


def test_an_interrupted_run_is_killed_in_mlflow(tmp_path, sqlite_store):
    cfg = linreg("name=mlflow_diverged", "optimizer.lr=100", "trainer.log_to=[mlflow]", f"trainer.mlflow_uri={sqlite_store}")
    with pytest.raises(TrainingDiverged):
        run_config(cfg, tmp_path / "run")
    _, runs = mlflow_runs(sqlite_store, "mlflow_diverged")
    assert list(runs["status"]) == ["FAILED"]


def test_a_sweep_is_a_parent_run_with_nested_trials(tmp_path, sqlite_store):
    result = CliRunner().invoke(app, ["sweep", str(CONFIGS / "linreg.yaml"), "--grid", "optimizer.lr=0.01,0.03",
                                      "--set", "trainer.epochs=2", "--log-to", "mlflow",
                                      "--mlflow-uri", sqlite_store, "--out", str(tmp_path / "sw")])
    assert result.exit_code == 0, result.output
    client, runs = mlflow_runs(sqlite_store, "linreg")  # the sweep's name: its config's, here
    parent = read_record(tmp_path / "sw")["mlflow"]["run_id"]
    children = runs[runs["run_id"] != parent]
    assert len(runs) == 3 and set(runs["status"]) == {"FINISHED"}
    assert list(children["tags.mlflow.parentRunId"]) == [parent, parent]
    for trial in sorted((tmp_path / "sw" / "trials").iterdir()):
        run_id = read_record(trial)["mlflow"]["run_id"]
        check_mlflow_run(client, run_id, trial, files=("config.yaml", "metrics.csv", "summary.json"))  # no plot per trial
    assert {"results.csv", "results.md"} <= {f.path for f in client.list_artifacts(parent)}
    best = pd.read_csv(tmp_path / "sw" / "results.csv")["final val/loss"].min()
    assert client.get_run(parent).data.metrics["best/val/loss"] == pytest.approx(best)


def test_mlflow_file_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow keeps its file store in maintenance only
    uri = (tmp_path / "mlruns").as_uri()
    run_config(linreg("name=mlflow_files", "trainer.log_to=[mlflow]", f"trainer.mlflow_uri={uri}"), tmp_path / "run")
    client, runs = mlflow_runs(uri, "mlflow_files")
    check_mlflow_run(client, runs.loc[0, "run_id"], tmp_path / "run")


def test_the_default_store_is_sqlite_in_mlruns(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_config(linreg("name=mlflow_default", "trainer.log_to=[mlflow]"), tmp_path / "run")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client, runs = mlflow_runs(uri, "mlflow_default")
    assert runs.loc[0, "artifact_uri"].startswith((tmp_path / "mlruns" / "artifacts").as_uri())
    check_mlflow_run(client, runs.loc[0, "run_id"], tmp_path / "run")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_mlflow_server_warns_once_and_the_run_completes(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    result = CliRunner().invoke(app, ["train", str(CONFIGS / "linreg.yaml"), "--set", "trainer.progress=none",
                                      "--log-to", "mlflow", "--log-to", "tensorboard",
                                      "--mlflow-uri", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert result.output.count("mlflow tracking could not start") == 1
    assert (tmp_path / "run" / "summary.json").is_file() and len(metrics_csv(tmp_path / "run")) == 3
    if (tmp_path / "run" / "tb").is_dir():  # the other tracker still tracks
        assert len(scalars(tmp_path / "run" / "tb")[1]["val/loss"]) == 3


@pytest.mark.slow
def test_mlflow_tracking_server(tmp_path):
    """A real tracking server on localhost with a SQLite backend, its artifacts proxied."""
    pytest.importorskip("mlflow")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    uri = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "the MLflow server exited"
                assert time.monotonic() < deadline, "the MLflow server did not start in 120 s"
                time.sleep(0.5)
        result = CliRunner().invoke(app, ["train", str(CONFIGS / "linreg.yaml"), "--set", "trainer.progress=none",
                                          "--set", "name=mlflow_server", "--log-to", "mlflow", "--mlflow-uri", uri,
                                          "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        client, runs = mlflow_runs(uri, "mlflow_server")
        assert list(runs["status"]) == ["FINISHED"]
        check_mlflow_run(client, runs.loc[0, "run_id"], tmp_path / "run")
        assert any((tmp_path / "artifacts").rglob("metrics.csv"))  # uploaded through the server
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_tracked_config_writes_event_files_equal_to_its_metrics(tmp_path, fake_fmnist_dir):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("tensorboard")
    cfg = load_config(CONFIGS / "mlp_tracked.yaml", ["trainer.progress=none", "trainer.epochs=2", f"data.dir={fake_fmnist_dir}"])
    assert cfg.trainer.log_to == ("tensorboard",) and cfg.book is None
    run_config(cfg, tmp_path / "run")
    _, tb = scalars(tmp_path / "run" / "tb")
    np.testing.assert_allclose([v for _, v in tb["val/acc"]], metrics_csv(tmp_path / "run")["val/acc"], rtol=1e-6)
