"""The dlrun command line through Typer's CliRunner."""

import json

from typer.testing import CliRunner

from dlrun.cli.main import app

from .conftest import CONFIGS

runner = CliRunner()


def test_train_writes_the_run_directory(tmp_path):
    out = tmp_path / "try1"
    result = runner.invoke(
        app, ["train", str(CONFIGS / "linreg.yaml"), "--set", "optimizer.lr=0.05", "--set", "trainer.epochs=2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output  # not a terminal: one plain line per epoch
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
    assert "lr: 0.05" in (out / "config.yaml").read_text()


def test_train_refuses_to_overwrite_a_run(tmp_path):
    out = tmp_path / "run"
    args = ["train", str(CONFIGS / "linreg.yaml"), "--set", "trainer.epochs=1", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    before = (out / "metrics.csv").read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already holds a run" in result.output
    assert (out / "metrics.csv").read_bytes() == before


def test_default_run_directories_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", str(CONFIGS / "linreg.yaml"), "--set", "trainer.epochs=1"]
    for _ in range(2):
        assert runner.invoke(app, args).exit_code == 0
    runs = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert len(runs) == 2 and all(r.startswith("linreg-") for r in runs)


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DLRUN_DATA_DIR", raising=False)
    monkeypatch.setattr("dlrun.core.data.fashion_mnist.FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "none"))
    result = runner.invoke(app, ["train", str(CONFIGS / "mlp.yaml"), "--set", f"data.dir={tmp_path}", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output


def test_list_shows_every_config_with_its_section():
    result = runner.invoke(app, ["list", str(CONFIGS)])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == len(list(CONFIGS.rglob("*.yaml")))
    assert any(line.startswith("mlp.yaml") and "D2L 4.2" in line for line in lines)


def test_a_bug_is_not_dressed_up_as_a_config_error(tmp_path, monkeypatch):
    """An exception that is not a DlrunError exits 1, says it is an internal error and keeps
    the traceback in the run directory (or prints it with --debug)."""

    def broken(*args, **kwargs):
        raise ValueError("shapes (3,) and (4,) do not align")

    monkeypatch.setattr("dlrun.core.training.lifecycle.build_setup", broken)
    args = ["train", str(CONFIGS / "linreg.yaml"), "--set", "trainer.progress=none"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "internal error" in result.output and "config error" not in result.output
    assert "ValueError: shapes" in (tmp_path / "r" / "error.log").read_text()
    debug = runner.invoke(app, ["--debug", *args, "--out", str(tmp_path / "d")])
    assert debug.exit_code == 1 and "Traceback" in debug.output and not (tmp_path / "d" / "error.log").exists()


def test_exit_codes_come_from_the_error_classes():
    from dlrun.core import errors

    assert errors.ConfigError.exit_code == errors.DataError.exit_code == errors.DataNotFoundError.exit_code == 2
    assert errors.TrainingDiverged.exit_code == 1 and errors.TrainingInterrupted.exit_code == 130
    assert all(issubclass(c, errors.DlrunError) for c in (errors.CheckpointError, errors.RunDirError, errors.SweepError))


def test_predict_labels_validation_images_of_a_classifier(tmp_path, fake_fmnist_dir):
    import numpy as np

    from dlrun.core.config import load_config
    from dlrun.core.data import load_dataset
    from dlrun.core.training.inference import load_run

    out = tmp_path / "run"
    args = ["train", str(CONFIGS / "softmax.yaml"), "--set", f"data.dir={fake_fmnist_dir}", "--set", "trainer.epochs=2",
            "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["predict", str(out), "--val", "12"])
    assert result.exit_code == 0, result.output
    assert (out / "predictions.png").stat().st_size > 5000
    # the printed accuracy is the model's on those 12 images, recomputed here from the checkpoint
    run = load_run(out)
    logits, _ = run.setup.model.apply(run.state.params, run.state.model_state, run.data.x_val[:12])
    data = load_dataset(load_config(out / "config.yaml").data, 0)
    expected = float(np.mean(np.argmax(np.asarray(logits), -1) == data.y_val[:12]))
    assert f"accuracy on the first 12 validation images: {expected:.4f}" in result.output
    wrong = runner.invoke(app, ["predict", str(out), "go ."])
    assert wrong.exit_code == 2 and "classifier run" in wrong.output and "SENTENCES" in wrong.output
