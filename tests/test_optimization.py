"""Chapter 11: the airfoil data, the stream of shuffled passes, the book's airfoil runs, and
sweeps of settings that go together (`cases:`)."""

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import AirfoilData, load_config
from dlrun.core.data.airfoil import airfoil, read_airfoil
from dlrun.core.data.sampling import Sampling, epoch_order
from dlrun.core.errors import ConfigError, DataError
from dlrun.core.sweep.spec import SweepSpec, expand
from dlrun.core.training.train import train

from .conftest import CONFIGS


@pytest.fixture
def airfoil_dir(d2l_data_dir):
    if not (d2l_data_dir / "airfoil_self_noise.dat").is_file():
        pytest.skip("airfoil_self_noise.dat not in the data directory")
    return d2l_data_dir


def test_airfoil_is_standardised_over_all_rows(airfoil_dir):
    data = airfoil(AirfoilData(dir=str(airfoil_dir)), seed=0)
    table = np.loadtxt(airfoil_dir / "airfoil_self_noise.dat")  # independent reading
    assert table.shape == (1503, 6)
    expected = ((table - table.mean(0)) / table.std(0))[:1500]
    np.testing.assert_allclose(data.x_train, expected[:, :5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.y_train[:, 0], expected[:, 5], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data.x_val, data.x_train)  # the book measures the loss on these rows


@pytest.mark.parametrize("line, problem", [("1 2 3 4 5", "expected 6"), ("1 2 3 4 5 x", "expected 6"),
                                            ("1 2 3 4 5 inf", "holds a value that is not finite")])
def test_a_bad_airfoil_row_names_the_file_and_line(tmp_path, line, problem):
    path = tmp_path / "airfoil_self_noise.dat"
    path.write_text("800\t0\t0.3048\t71.3\t0.00266337\t126.201\n" + line + "\n")
    with pytest.raises(DataError, match=rf"airfoil_self_noise.dat, line 2: {problem}"):
        read_airfoil(path)


def test_examples_per_epoch_must_be_whole_batches():
    with pytest.raises(ValueError, match="multiple of batch_size"):
        AirfoilData(batch_size=30, examples_per_epoch=200)


def test_the_stream_walks_whole_shuffled_passes():
    """15 epochs of 20 batches of 10 are 2 passes over 1,500 examples, each a permutation; the
    same epoch is the same batches; consecutive epochs continue the stream."""
    sampling, key = Sampling("stream", stream_steps=20), __import__("jax").random.PRNGKey(3)
    orders = [np.asarray(epoch_order(sampling, key, e, 1500, 10)) for e in range(1, 16)]
    assert all(o.shape == (20, 10) for o in orders)
    flat = np.concatenate([o.ravel() for o in orders])
    for p in range(2):
        np.testing.assert_array_equal(np.sort(flat[p * 1500:(p + 1) * 1500]), np.arange(1500))
    assert not np.array_equal(flat[:1500], flat[1500:])  # each pass its own order
    np.testing.assert_array_equal(np.asarray(epoch_order(sampling, key, 9, 1500, 10)), orders[8])


def book_range(config_path):
    """The book's loss range from the config's header: its first 'a-b' pair of numbers."""
    import re

    header = config_path.read_text().splitlines()[1]
    low, high = re.search(r"(0\.\d+)-(0\.\d+)", header).groups()
    return float(low), float(high)


AIRFOIL_CONFIGS = sorted(CONFIGS.glob("airfoil_*.yaml"))


@pytest.mark.parametrize("path", AIRFOIL_CONFIGS, ids=lambda p: p.stem)
def test_airfoil_configs_reach_the_books_loss(path, airfoil_dir, tmp_path):
    cfg = load_config(path, [f"data.dir={airfoil_dir}", "trainer.progress=none"])
    result = train(cfg, tmp_path / "run", plot=False)
    low, high = book_range(path)
    loss = result.summary["val/loss"]
    assert loss <= high + 0.002, f"{path.name}: loss {loss:.4f}, book {low}-{high}"
    first = result.rows[0]["val/loss"]
    assert loss < first or len(result.rows) == 1


def test_cases_are_trials_crossed_with_the_grid():
    spec = SweepSpec(base="x.yaml", parameters={"optimizer.lr": [0.1, 0.2]},
                     cases=[{"data.batch_size": 1, "trainer.epochs": 2}, {"data.batch_size": 10}])
    trials = expand(spec, "s.yaml")
    assert [t.params for t in trials] == [
        {"optimizer.lr": 0.1, "data.batch_size": 1, "trainer.epochs": 2}, {"optimizer.lr": 0.1, "data.batch_size": 10},
        {"optimizer.lr": 0.2, "data.batch_size": 1, "trainer.epochs": 2}, {"optimizer.lr": 0.2, "data.batch_size": 10},
    ]
    only_cases = expand(SweepSpec(base="x.yaml", cases=[{"a.b": 1}, {"a.b": 2}]), "s.yaml")
    assert [t.params for t in only_cases] == [{"a.b": 1}, {"a.b": 2}]


@pytest.mark.parametrize("spec, message", [
    (SweepSpec(base="x.yaml"), "at least one parameter"),
    (SweepSpec(base="x.yaml", cases=[{}]), "cases\\[0\\]: expected a mapping"),
    (SweepSpec(base="x.yaml", parameters={"optimizer.lr": [0.1]}, cases=[{"optimizer.lr": 1}]), "also in parameters"),
])
def test_bad_cases_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        expand(spec, "s.yaml")


def test_batch_size_sweep_draws_progress_against_examples_and_time(airfoil_dir, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    raw = yaml.safe_load((CONFIGS / "sweeps" / "airfoil_batch_sizes.yaml").read_text())
    raw["base"] = str(CONFIGS / "airfoil_minibatch10.yaml")
    raw["set"] = {"data.dir": str(airfoil_dir), "trainer.epochs": 3}
    raw["cases"] = [c for c in raw["cases"] if c["data.batch_size"] in (10, 100)]
    sweep.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert sorted(table["data.batch_size"]) == [10, 100]
    assert (tmp_path / "out" / "progress.png").stat().st_size > 10_000
    metrics = pd.read_csv(next((tmp_path / "out" / "trials").glob("*batch_size=100*")) / "metrics.csv")
    assert metrics["examples"].tolist() == [200, 400, 600]


def test_toy_runs_end_where_the_book_printed(tmp_path):
    """D2L 11.3-11.8: every deterministic run's final point equals the book's to its 6 printed
    decimals (relative, for the divergent ones); SGD's exponential schedule stalls farther from
    the optimum than the polynomial one (11.4's point)."""
    from dlrun.experiments import run_config

    cfg = load_config(CONFIGS / "optimization_toys.yaml", ["experiment.repeats=8", "trainer.progress=none"])
    summary = run_config(cfg, tmp_path / "run")
    runs = {r["run"]: r for r in summary["runs"]}
    checked = [r for r in runs.values() if "book" in r]
    assert len(checked) == 15
    for r in checked:
        assert r["difference"] < 5e-6, r
    distance = {name: runs[f"SGD {name}"]["mean_distance_to_optimum"] for name in ("constant", "exponential", "polynomial")}
    assert distance["exponential"] > 2 * distance["polynomial"], distance
    assert (tmp_path / "run" / "trajectories.png").stat().st_size > 50_000
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    assert len(table) == len(runs)
