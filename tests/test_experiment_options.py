"""Experiment options obey the rules of every other config section: unknown keys and a boolean
where a number belongs are config errors naming the key, for every experiment's options."""

import typing

import pytest

from dlrun.core.config import Config, ConfigError, Section
from dlrun.experiments import EXPERIMENTS, experiment_for


def numeric_fields(cls: type[Section], prefix: tuple[str, ...] = ()):
    """(dotted path, field) of every number field, nested sections included."""
    for name, field in cls.model_fields.items():
        args = typing.get_args(field.annotation) or (field.annotation,)
        nested = [a for a in args if isinstance(a, type) and issubclass(a, Section)]
        if nested:
            yield from numeric_fields(nested[0], (*prefix, name))
        elif bool not in args and any(a in (int, float) for a in args):
            yield (*prefix, name)


CASES = [(name, path) for name, e in sorted(EXPERIMENTS.items()) for path in numeric_fields(e.options)]


def test_every_experiment_has_options_that_are_sections():
    assert all(issubclass(e.options, Section) for e in EXPERIMENTS.values())
    assert len(CASES) > 10


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}:{'.'.join(p)}" for n, p in CASES])
def test_a_boolean_for_a_number_is_refused(name, path):
    options: dict = {"name": name}
    node = options
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = True
    cfg = Config.model_validate({"experiment": options})
    with pytest.raises(ConfigError, match=rf"x\.yaml: experiment.*{path[-1]}: expected a number, found true"):
        experiment_for(cfg, "x.yaml")


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_an_unknown_option_is_refused(name):
    cfg = Config.model_validate({"experiment": {"name": name, "no_such_option": 1}})
    with pytest.raises(ConfigError, match=r"no_such_option: unknown key"):
        experiment_for(cfg, "x.yaml")


def test_a_sub_run_config_is_derived_through_validated_overrides():
    from dlrun.core.config import MLPModel, derive, load_config

    from .conftest import CONFIGS

    cfg = load_config(CONFIGS / "kaggle_house.yaml")
    sub = derive(cfg, {"name": "fold1", "trainer.epochs": 3, "model": MLPModel(hidden=(8,))})
    assert (sub.name, sub.trainer.epochs, sub.model.hidden) == ("fold1", 3, (8,))
    assert sub.experiment.name == "train" and sub.book is None and sub.data == cfg.data
    with pytest.raises(ConfigError, match=r"x.yaml \(derived: trainer.epochs\): trainer: epochs: expected a number"):
        derive(cfg, {"trainer.epochs": True}, "x.yaml")
    with pytest.raises(ConfigError, match=r"optimizer.lrr: unknown key; did you mean 'optimizer.lr'"):
        derive(cfg, {"optimizer.lrr": 0.1})
