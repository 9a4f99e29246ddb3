"""The documentation, checked: the config reference is what the schema generates and names every
key; the README keeps its two commands at the top and stays short; every relative link lands on
a file (and heading) that exists; every config is named in docs/results.md, and every config
results.md names exists; the README's layout names every module of `core`."""

import fnmatch
import re
import runpy
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from dlrun.core.config import Config
from dlrun.core.config.reference import anchor, config_reference
from dlrun.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "config-reference.md"
REGENERATE = ".venv/bin/python docs/generate.py"
SETUP = ("apt-get install -y dataset-fashion-mnist >/dev/null 2>&1; python3 -m venv .venv && "
         ".venv/bin/pip install -e '.[test,onednn]' && .venv/bin/dlrun train configs/mlp.yaml")
TESTS = ".venv/bin/python -m pytest -n 3"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def experiment_options() -> dict[str, type[BaseModel]]:
    return {name: e.options for name, e in EXPERIMENTS.items()}


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


# ------------------------------------------------------------------ the config reference


def test_config_reference_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == config_reference(experiment_options()), (
        f"docs/config-reference.md is stale (the schema or an experiment's options changed): run {REGENERATE}")


def test_generate_check_fails_on_a_stale_page_and_passes_on_a_fresh_one(tmp_path):
    script = runpy.run_path(str(DOCS / "generate.py"))
    page = tmp_path / "reference.md"
    page.write_text("# an old reference\n")
    assert script["main"](["--check", "--out", str(page)]) == 1
    assert script["main"](["--out", str(page)]) == 0
    assert script["main"](["--check", "--out", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")


def dotted_keys(cls: type[BaseModel], prefix: str = "", skip: tuple[str, ...] = ()) -> set[str]:
    """Every key a config of `cls` may hold: nested sections, each kind of a union, list items."""
    keys = set()
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        key = f"{prefix}.{name}" if prefix else name
        args = typing.get_args(field.annotation)
        if typing.get_origin(field.annotation) is dict:  # keys are the user's names (optimizers.<part>)
            keys.add(key)
            continue
        members = [m for m in args or (field.annotation,) if m is not type(None)]
        if typing.get_origin(field.annotation) is tuple and args[-1:] == (Ellipsis,) and is_model(args[0]):
            members, key = [args[0]], key + "[]"  # a list of sections: each item's keys
        models = [m for m in members if is_model(m)]
        if models:
            for model in models:
                keys |= dotted_keys(model, key)
        else:
            keys.add(key)
    return keys


def is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def test_config_reference_names_every_key():
    text = config_reference(experiment_options())
    keys = dotted_keys(Config)
    for name, options in experiment_options().items():
        keys |= dotted_keys(options, "experiment", skip=("name",))
        assert f"### experiment: {name}" in text, f"experiment {name} has no section in the reference"
    assert {"optimizer.schedule.name", "data.augment.flip", "model.hidden", "book.section"} <= keys
    missing = sorted(k for k in keys if f"| `{k}` |" not in text)
    assert not missing, f"the config reference has no row for {missing}"


def test_config_reference_imports_no_jax():
    code = "import sys, dlrun.core.config.reference; sys.exit('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ------------------------------------------------------------------ the README


def test_readme_is_short_and_starts_with_its_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail into docs/ (at most 300)"
    first_block = re.search(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert first_block, "README.md has no code block"
    assert first_block.group(1) == "bash", "README.md's first code block is not a bash block"
    assert first_block.group(2).splitlines() == [SETUP, TESTS], "README.md's first block must be the setup and test commands"
    intro = text[: first_block.start()]
    assert intro.startswith("# dlrun\n") and "```" not in intro and "\n## " not in intro


def test_readme_layout_names_every_module_of_core():
    layout = re.search(r"^## Layout\n.*?^```\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    assert layout, "README.md has no ## Layout block"
    files, folders = set(re.findall(r"\w+\.py", layout.group(1))), set(re.findall(r"(\w+)/", layout.group(1)))
    missing = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "core").rglob("*.py")
                     if p.name != "__init__.py" and "__pycache__" not in p.parts and p.name not in files)
    missing += sorted(f"{p.relative_to(ROOT)}/" for p in [*ROOT.iterdir(), *(ROOT / "core").iterdir()]
                      if p.is_dir() and not ignored(p.name) and p.name not in folders)
    assert not missing, f"README.md's layout does not name {missing}"


def ignored(name: str) -> bool:
    """A folder git ignores (.gitignore's patterns), or a hidden or cache one."""
    patterns = [line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines() if line.strip()]
    return name.startswith((".", "_")) or any(fnmatch.fnmatch(name, p.rstrip("/*") or p) for p in patterns)


# ------------------------------------------------------------------ links


def headings(path: Path) -> Iterator[str]:
    """The anchors of a Markdown file's headings, as GitHub makes them (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    for title in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        slug = anchor(title)
        seen[slug] = seen.get(slug, -1) + 1
        yield slug if seen[slug] == 0 else f"{slug}-{seen[slug]}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_land(page):
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in set(headings(file)):
            broken.append(f"{target} (no such heading in {file.name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_contents_list_every_docs_page():
    readme, index = (ROOT / "README.md").read_text(encoding="utf-8"), (DOCS / "README.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"(docs/{page.name}" in readme, f"README.md's contents do not link docs/{page.name}"
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


# ------------------------------------------------------------------ results


def test_results_name_every_config_and_only_configs_that_exist():
    results = (DOCS / "results.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w<>.-])(\w[\w.-]*\.yaml)", results))  # not configs/<model>_cpu.yaml
    configs = {p.name for p in (ROOT / "configs").glob("*.yaml")}
    sweeps = {p.name for p in (ROOT / "configs" / "sweeps").glob("*.yaml")}
    unknown = sorted(named - configs - sweeps)
    assert not unknown, f"docs/results.md names configs that do not exist: {unknown}"
    missing = sorted(configs - named)
    assert not missing, f"docs/results.md does not name {missing}: add its numbers next to the book's (or why there are none)"
