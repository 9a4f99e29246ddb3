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


def derive(cfg: Config, changes: dict[str, Any], source: str = "config") -> Config:
    """The config of a sub-run: `cfg` with `changes` (dotted keys, as `--set` writes them; a
    value may be a section) applied and validated like a file, so a sub-run obeys every rule a
    config does. `experiment` resets to the generic loop and `book` is dropped (the book's result
    belongs to the whole experiment) unless a change names them.

    Raises:
        ConfigError: naming `source`, the key and what was expected.
    """
    raw = cfg.model_dump(mode="json")
    raw["experiment"], raw["book"] = {"name": "train"}, None
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return validate(raw, f"{source} (derived: {', '.join(changes)})")


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


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of YAML; more is a mistake (or /dev/zero)
MAX_CONFIG_VALUES = 100_000  # what a document may expand to, aliases included ("billion laughs")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges; later keys override it
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error says so
                break
            line = key_node.start_mark.line + 1
            if first is not None:
                raise DuplicateKeyError(f"the key {key!r} appears twice in one mapping, at lines {first} and {line}")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.YAMLError):
    pass


def _count_values(raw: Any, budget: int) -> int:
    """How many values `raw` holds once its shared (aliased) parts are expanded, counted up to
    `budget + 1` without expanding anything."""
    count, stack = 0, [raw]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
            count += len(item)
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _read_text(path: Path) -> str:
    """The file's text, refusing what is not a regular file (a FIFO or device never ends) and
    anything larger than a config can be."""
    import stat

    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: is not a regular file (a device, FIFO or socket); expected a YAML config file")
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config file is a page of YAML")
    return data.decode("utf-8")


def read_yaml_mapping(path: Path) -> dict:
    try:
        text = _read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not a UTF-8 text file, expected a YAML config file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: is not valid YAML: {_one_line(err)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: is nested too deeply to be a config") from None
    except (ValueError, AttributeError, KeyError, TypeError) as err:  # PyYAML's own for `!!int x`, `2020-13-45`
        raise ConfigError(f"{path}: is not valid YAML: a value cannot be read as its tag or type says ({err})") from None
    if _count_values(raw, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError(f"{path}: expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases repeated inside "
                          "each other?); a config is far smaller")
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


