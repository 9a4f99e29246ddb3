"""`dlrun summary` of a model built of functions rather than one layer (a recommender,
skip-gram): a row per parameter array and one for the whole forward pass, the total the model's
own parameter count."""

import jax
import pytest
from typer.testing import CliRunner

from dlrun.cli.main import app
from dlrun.core.config import load_config
from dlrun.core.data import load_dataset
from dlrun.core.nn.params import count
from dlrun.core.training.setup import model_for, network_summary

from .conftest import CONFIGS


@pytest.mark.parametrize("config", ["mf_lowrank.yaml", "caser_lowrank.yaml"])
def test_a_model_of_functions_is_summarised_by_its_parameters(config):
    cfg = load_config(CONFIGS / config, ["data.lowrank.num_users=40", "data.lowrank.num_items=50"])
    data = load_dataset(cfg.data, cfg.seed)
    model = model_for(cfg, data)
    assert model.net is None
    rows, _ = network_summary(cfg, data)
    params, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    assert sum(r.params for r in rows) == count(params)
    assert rows[-1].path == "forward" and rows[-1].flops > 0
    result = CliRunner().invoke(app, ["summary", str(CONFIGS / config), "--set", "data.lowrank.num_users=40",
                                      "--set", "data.lowrank.num_items=50"])
    assert result.exit_code == 0, result.output
    assert f"{count(params):,}" in result.output.splitlines()[-1]
