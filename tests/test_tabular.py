"""The csv data set: pandas preprocessing as in D2L 2.2 and 4.10, fitted on training rows only."""

import numpy as np
import pandas as pd
import pytest

from dlrun.core.config import CSVData, load_config
from dlrun.core.data import DataError, load_dataset
from dlrun.core.data.files import DataNotFoundError
from dlrun.core.data.tabular import Preprocessor, read_table, split_target

# D2L 2.2.1 (1.0 edition): the book's house_tiny.csv, byte for byte
HOUSE_TINY = "NumRooms,RoofType,Price\nNA,NA,127500\n2,NA,106000\n4,Slate,178100\nNA,NA,140000\n"


@pytest.fixture
def house_tiny(tmp_path):
    path = tmp_path / "house_tiny.csv"
    path.write_text(HOUSE_TINY)
    return path


def test_house_tiny_as_the_book_preprocesses_it(house_tiny):
    features, y = split_target(read_table(house_tiny), "Price", ("Id",), str(house_tiny))
    pre = Preprocessor.fit(features)
    x = pre.transform(features)
    # the same columns as the book's pd.get_dummies(inputs, dummy_na=True)
    assert pre.feature_names == tuple(pd.get_dummies(features, dummy_na=True).columns)
    assert pre.feature_names == ("NumRooms", "RoofType_Slate", "RoofType_nan")
    # NumRooms: mean 3, std sqrt(2) (pandas, ddof=1); the missing rooms become 0, the mean
    np.testing.assert_allclose(x[:, 0], [0, -1 / np.sqrt(2), 1 / np.sqrt(2), 0], rtol=1e-6)
    np.testing.assert_array_equal(x[:, 1:], [[0, 1], [0, 1], [1, 0], [0, 1]])
    assert x.dtype == np.float32
    np.testing.assert_array_equal(y, [127500, 106000, 178100, 140000])


def test_validation_rows_use_the_training_statistics():
    train = pd.DataFrame({"NumRooms": [2.0, 4.0, np.nan], "RoofType": ["Slate", None, "Slate"]})
    val = pd.DataFrame({"NumRooms": [6.0, np.nan, 2.0], "RoofType": ["Tile", None, "Slate"]})
    pre = Preprocessor.fit(train)
    x = pre.transform(val)
    # train's mean 3 and std sqrt(2), not val's (mean 4, std 2.83)
    np.testing.assert_allclose(x[:, 0], [3 / np.sqrt(2), 0, -1 / np.sqrt(2)], rtol=1e-6)
    # an unseen category ("Tile") is all zeros; a missing one is the _nan column
    np.testing.assert_array_equal(x[:, 1:], [[0, 0], [0, 1], [1, 0]])
    assert Preprocessor.fit(pd.concat([train, val])).mean != pre.mean


def test_transform_names_missing_and_mistyped_columns():
    pre = Preprocessor.fit(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    with pytest.raises(DataError, match="test.csv: lacks the column.*b"):
        pre.transform(pd.DataFrame({"a": [1.0]}), "test.csv")
    with pytest.raises(DataError, match="test.csv: column 'a' is numeric in the training data but holds 'lots'"):
        pre.transform(pd.DataFrame({"a": ["lots"], "b": ["x"]}), "test.csv")


def write_houses(path, n, seed=0):
    rng = np.random.default_rng(seed)
    rooms = rng.integers(2, 8, n).astype(float)
    rooms[::7] = np.nan
    roof = rng.choice(["Slate", "Tile", "Tar"], n).astype(object)
    roof[::5] = None
    price = 50_000 + 20_000 * np.nan_to_num(rooms, nan=4) + rng.normal(0, 1000, n)
    pd.DataFrame({"Id": np.arange(n), "NumRooms": rooms, "RoofType": roof, "SalePrice": price}).to_csv(path, index=False)
    return path


def test_csv_dataset_splits_by_seed_and_fits_on_training_rows(tmp_path):
    path = write_houses(tmp_path / "houses.csv", 50)
    cfg = CSVData(file=str(path), log_target=True, val_fraction=0.2)
    data = load_dataset(cfg, seed=0)
    assert data.x_train.shape == (40, 5) and data.x_val.shape == (10, 5)
    assert data.y_train.shape == (40, 1) and data.y_train.dtype == np.float32
    assert data.meta["feature_names"] == ["NumRooms", "RoofType_Slate", "RoofType_Tar", "RoofType_Tile", "RoofType_nan"]
    # standardised with the training rows: their rooms have mean 0 (missing ones are 0 too)
    assert abs(data.x_train[:, 0].mean()) < 1e-6 and abs(data.x_val[:, 0].mean()) > 1e-3
    table = pd.read_csv(path)
    assert np.log(table["SalePrice"]).min() == pytest.approx(min(data.y_train.min(), data.y_val.min()), rel=1e-6)
    again, other = load_dataset(cfg, seed=0), load_dataset(cfg, seed=1)
    np.testing.assert_array_equal(again.y_val, data.y_val)
    assert not np.array_equal(other.y_val, data.y_val)


def test_val_file_and_data_directory_look_up(tmp_path, monkeypatch):
    write_houses(tmp_path / "train.csv", 30, seed=0)
    write_houses(tmp_path / "val.csv", 12, seed=1)
    monkeypatch.setenv("DLRUN_DATA_DIR", str(tmp_path))
    data = load_dataset(CSVData(file="train.csv", val_file="val.csv"), seed=0)
    assert data.x_train.shape[0] == 30 and data.x_val.shape[0] == 12
    assert data.meta["val_file"] == str(tmp_path / "val.csv")
    with pytest.raises(DataNotFoundError, match="nowhere.csv not found"):
        load_dataset(CSVData(file="nowhere.csv"), seed=0)


def test_the_kaggle_file_is_not_downloaded_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("DLRUN_DATA_DIR", str(tmp_path))  # empty; conftest sets DLRUN_OFFLINE
    with pytest.raises(DataNotFoundError, match="585e9cc93e70b39160e7921475f9bcd7d31219ce") as err:
        load_dataset(CSVData(file="kaggle_house_pred_train.csv"), seed=0)
    assert "d2l-data.s3-accelerate.amazonaws.com/kaggle_house_pred_train.csv" in str(err.value)


def test_missing_target_column_names_the_file_and_its_columns(house_tiny):
    with pytest.raises(DataError, match=r"house_tiny.csv: has no target column 'SalePrice'.*NumRooms, RoofType, Price"):
        load_dataset(CSVData(file=str(house_tiny)), seed=0)


@pytest.mark.parametrize(
    "content, message",
    [
        ("Größe,Preis\n1,2\n".encode("latin-1"), "is not a UTF-8 text file"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "is not a UTF-8 text file"),
        (b"", "is empty"),
        (b"\n  \n", "is empty"),
        (b"NumRooms,Price\n", "has a header row .* but no data rows"),
        (b"a,b\x00\n1,2\n", "holds NUL bytes"),
    ],
    ids=["latin-1", "gzip", "empty", "blank", "header-only", "nul"],
)
def test_unusable_files_are_data_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"bad.csv: {message}"):
        load_dataset(CSVData(file=str(path), target="Price"), seed=0)


def test_missing_or_non_positive_targets(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,Price\n1,10\n2,\n3,abc\n")
    with pytest.raises(DataError, match=r"t.csv: target column 'Price' has 2 missing or non-numeric values \(file lines 3, 4\)"):
        load_dataset(CSVData(file=str(path), target="Price"), seed=0)
    path.write_text("x,Price\n1,10\n2,0\n3,5\n4,6\n5,7\n")
    with pytest.raises(DataError, match="'Price' must be positive to take its log"):
        load_dataset(CSVData(file=str(path), target="Price", log_target=True), seed=0)


def test_a_split_that_leaves_no_validation_rows_is_an_error(house_tiny):
    with pytest.raises(DataError, match="leave no validation rows"):
        load_dataset(CSVData(file=str(house_tiny), target="Price", val_fraction=0.1), seed=0)


def test_the_generic_trainer_learns_from_a_csv(tmp_path):
    """`dlrun train` with `data.name: csv` and no experiment: linear regression on log prices."""
    from dlrun.core.training.train import train

    path = write_houses(tmp_path / "houses.csv", 400)
    cfg_path = tmp_path / "csv.yaml"
    cfg_path.write_text(
        f"name: csv\ndata: {{name: csv, file: '{path}', log_target: true, batch_size: 32}}\n"
        "model: {name: linear_regression}\nloss: {name: mse}\noptimizer: {name: adam, lr: 0.1}\n"
        "trainer: {epochs: 20, progress: none}\n"
    )
    result = train(load_config(cfg_path), tmp_path / "run")
    assert result.rows[-1]["val/loss"] < 0.1 * result.rows[0]["val/loss"]
    assert result.summary["val/loss"] < 0.005  # the log prices vary by 0.067 (variance) about their mean
