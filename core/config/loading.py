"""Loading a config: YAML files with `base:` inheritance, `--set` overrides, validation.

A config may extend another file (`base: mlp.yaml`, resolved relative to the file) and be
overridden from the command line (`--set optimizer.lr=0.05`, the value parsed as YAML). Every
mistake becomes a `ConfigError` that names the file (or the `--set` option), the dotted key,
what was expected and what was found (`core.config.messages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .messages import describe_errors
from .schema import Config


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, resolve `base:` files, apply `--set` overrides and validate.

    Raises:
        ConfigError: with a message that names the file or option, the key, the expected and
            the found value.
    """
    path = Path(path)
    raw = _read_with_bases(path, chain=())
    set_keys = {}
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(raw, key, value, item)
        set_keys[key] = item
    return validate(raw, source=str(path), set_keys=set_keys)


def parse_override(item: str) -> tuple[str, Any]:
    """`optimizer.lr=0.05` -> ("optimizer.lr", 0.05); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.05")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item}: the value is not valid YAML ({_one_line(err)})") from None
    return key, value


def validate(raw: dict, source: str, set_keys: dict[str, str] | None = None) -> Config:
    """Validate a raw mapping into a Config, turning pydantic's errors into ConfigError."""
    set_keys = set_keys or {}
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, Config, source, set_keys)) from None


def validate_options(cls: type[BaseModel], cfg: Config, source: str = "config") -> BaseModel:
    """Validate an experiment's options (the keys beside `experiment.name`) with its own model.

    Errors read like every other config error: `<source>: experiment.<key>: ...`.
    """
    try:
        return cls.model_validate(cfg.experiment.options())
    except ValidationError as err:
        raise ConfigError(describe_errors(err, cls, source, prefix=("experiment",))) from None


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML, loadable again by `load_config`."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}: config keys as the CLI writes them."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def header_comment(path: str | Path) -> list[str]:
    """The leading comment lines of a config file, without the '#'."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict:
    raw = read_yaml_mapping(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected the path of another config file, found {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(f"{path}: base: {base} extends itself (cycle: {' -> '.join(map(str, chain))})")
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: no such file {base_path}")
    return _deep_merge(_read_with_bases(base_path, chain + (path.resolve(),)), raw)


def read_yaml_mapping(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not a UTF-8 text file, expected a YAML config file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: is not valid YAML: {_one_line(err)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: is nested too deeply to be a config") from None
    if raw is None:
        raise ConfigError(f"{path}: is empty; expected a YAML mapping with sections such as model and optimizer")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, found {type(raw).__name__}")
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: keys must be strings, found {bad[0]!r}")
    return raw


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(raw: dict, key: str, value: Any, item: str) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"--set {item}: {where} is a value, not a section, so it has no key {key}")
        node = child
    node[leaf] = value


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


