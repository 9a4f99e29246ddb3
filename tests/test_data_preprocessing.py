"""D2L 2.2: house_tiny.csv through the book's steps gives the tables and tensors the book prints."""

import numpy as np
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import load_config
from dlrun.experiments import run_config

from .conftest import CONFIGS


def test_the_book_tables_and_arrays(tmp_path):
    summary = run_config(load_config(CONFIGS / "data_preprocessing.yaml", ["trainer.progress=none"]), tmp_path / "run")
    # the book's printed tensors (D2L 2.2.3), an independent record of what these steps give
    np.testing.assert_array_equal(summary["X"], [[3, 0, 1], [2, 0, 1], [4, 1, 0], [3, 0, 1]])
    np.testing.assert_array_equal(summary["y"], [127500, 106000, 178100, 140000])
    assert summary["columns"] == ["NumRooms", "RoofType_Slate", "RoofType_nan"] and summary["max_difference"] == 0
    csv = (tmp_path / "run" / "data" / "house_tiny.csv").read_text()
    assert csv.splitlines() == ["NumRooms,RoofType,Price", "NA,NA,127500", "2,NA,106000", "4,Slate,178100", "NA,NA,140000"]
    tables = (tmp_path / "run" / "tables.md").read_text()
    assert "get_dummies(inputs, dummy_na=True)" in tables and "fillna(inputs.mean())" in tables
    imputed = tables.split("fillna(inputs.mean())")[1]
    assert "3.0           False          True" in imputed and "NaN" not in imputed


def test_it_is_listed_under_2_2():
    result = CliRunner().invoke(app, ["list", str(CONFIGS)])
    line = next(line for line in result.output.splitlines() if line.startswith("data_preprocessing.yaml"))
    assert "2.2 max_difference 0" in line
