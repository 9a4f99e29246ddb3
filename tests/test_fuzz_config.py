"""Property-based: whatever document or --set value a user gives, the config loader ends in a
valid config or a clean ConfigError (exit code 2 through the CLI), never a traceback."""

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core import config as C

from .conftest import CONFIGS

runner = CliRunner()
KEYS = ["name", "seed", "base", "data", "model", "loss", "optimizer", "trainer", "experiment", "batch_size",
        "lr", "hidden", "dropout", "epochs", "activation", "num_train", "true_w", "schedule", "optimzer", "x"]  # fmt: skip
NAMES = ["mlp", "softmax_regression", "linear_regression", "fashion_mnist", "synthetic_regression", "sgd",
         "adam", "cross_entropy", "relu", "cosine", "transformer", ""]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=20,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=7)

COUNTS = {"documents": 0, "garbage": 0, "overrides": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """Print how many cases the properties tried (visible with -s)."""
    yield
    print(f"\nfuzzed config cases: {COUNTS}")


def check(path, *overrides):
    """One case: a valid Config or a ConfigError; through the CLI, exit 0 or 2 and no traceback."""
    try:
        cfg = C.load_config(path, list(overrides))
    except C.ConfigError as err:
        assert str(err) and "Traceback" not in str(err)
        cfg = None
    args = ["show-config", str(path)] + [a for o in overrides for a in ("--set", o)]
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == (0 if cfg is not None else 2), result.output
    if cfg is not None:
        assert C.load_config(path, list(overrides)) == cfg  # deterministic


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@FUZZ
@given(doc=documents)
def test_random_documents(tmp_path, doc):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    COUNTS["documents"] += 1
    check(path)


@pytest.mark.slow
@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(alphabet=string.printable + "{}[]:-&*!|>'\"%@`\u00e9\u2603", max_size=200)))
def test_garbage_files(tmp_path, raw):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    COUNTS["garbage"] += 1
    check(path)


@pytest.mark.slow
@FUZZ
@given(
    key=st.one_of(st.sampled_from(["optimizer.lr", "model.hidden", "trainer.epochs", "data.batch_size", "model.dropout",
                                   "seed", "name", "model", "optimizer.schedule.name", "a..b", ".x", "model.hidden.0"]),
                  st.text(max_size=10)),
    value=st.one_of(st.text(max_size=20), st.sampled_from(["[1, 2", "nan", ".inf", "-1", "1e400", "[[[[[]]]]]", "{a: 1}", "!!python/object:os.system ls"])),
)  # fmt: skip
def test_random_overrides(key, value):
    COUNTS["overrides"] += 1
    check(CONFIGS / "mlp.yaml", f"{key}={value}")


def test_deeply_nested_yaml_is_a_clean_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = runner.invoke(app, ["show-config", str(path)])
    assert result.exit_code == 2 and str(path) in result.output


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    result = runner.invoke(app, ["show-config", str(path)])
    assert result.exit_code == 2 and "not valid YAML" in result.output
