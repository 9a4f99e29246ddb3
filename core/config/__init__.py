"""Experiment configs: the schema (`schema`), loading YAML with `base:` and `--set` (`loading`),
and messages that name the file, the key and what was expected (`messages`)."""

from ..errors import ConfigError
from .loading import (
    derive,
    flatten,
    header_comment,
    load_config,
    parse_override,
    read_yaml_mapping,
    to_yaml,
    validate,
    validate_options,
)
from .models import *  # noqa: F403
from .schema import *  # noqa: F403 - the sections are the package's vocabulary
from .schema import Config

__all__ = [
    "Config", "ConfigError", "derive", "flatten", "header_comment", "load_config", "parse_override",
    "read_yaml_mapping", "to_yaml", "validate", "validate_options",
]  # fmt: skip
