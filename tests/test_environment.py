"""environment.yml mirrors pyproject.toml: same dependency names (runtime + the extras below).

pyproject.toml is the source of truth; environment.yml is the conda route to the same
environment, so a dependency added to one and forgotten in the other fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("widgets", "book", "test", "browser")
# Entries of environment.yml that are tooling, not dependencies of the project.
NOT_DEPENDENCIES = {"python", "pip"}


def normalize(name: str) -> str:
    """PEP 503 normalisation: case-insensitive, runs of `-`, `_`, `.` are equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_name(spec: str) -> str:
    """Package name of a conda match spec or a pip line (`numpy>=1.23`, `torch >=2.1`)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, f"environment.yml: cannot read a package name from {spec!r}"
    return normalize(match.group(1))


def pyproject_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in EXTRAS:
        specs += project["optional-dependencies"][extra]
    names = {normalize(Requirement(spec).name) for spec in specs}
    # `gsa_tutorial[widgets]` inside [book] is the project's own extra, listed above.
    return names - {normalize(project["name"])}


def environment_names() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names: set[str] = set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):  # the `pip:` section
            for line in entry["pip"]:
                if line.startswith("-"):  # `-e .` installs the project itself
                    continue
                names.add(conda_name(line))
        else:
            names.add(conda_name(entry))
    return names - NOT_DEPENDENCIES


def test_environment_yml_lists_the_pyproject_dependencies() -> None:
    expected, actual = pyproject_names(), environment_names()
    assert actual == expected, (
        f"environment.yml and pyproject.toml (runtime + {EXTRAS}) disagree: "
        f"only in pyproject: {sorted(expected - actual)}, "
        f"only in environment.yml: {sorted(actual - expected)}"
    )


def test_environment_yml_installs_the_package_and_python() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "gsa-tutorial"
    conda = [entry for entry in env["dependencies"] if isinstance(entry, str)]
    pip = [line for entry in env["dependencies"] if isinstance(entry, dict) for line in entry["pip"]]
    assert any(conda_name(spec) == "python" for spec in conda), "environment.yml must pin python"
    assert "-e ." in pip, "environment.yml must install the package itself (`-e .` in pip:)"


# ---------------------------------------------------------------- ipywidgets is optional

BLOCK_WIDGETS = """
import importlib.abc, sys

class _NoWidgets(importlib.abc.MetaPathFinder):
    # What a plain `pip install gsa_tutorial` gives: no ipywidgets, no IPython.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ipywidgets", "IPython"):
            raise ImportError(f"{name} is blocked: gsa_tutorial must work without it")
        return None

sys.meta_path.insert(0, _NoWidgets())
"""


def test_the_package_needs_no_widgets_at_runtime() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {normalize(Requirement(spec).name) for spec in project["dependencies"]}
    assert not runtime & {"ipywidgets", "ipython", "jedi"}, (
        f"runtime dependencies {sorted(runtime)} include notebook-only packages: put them in [widgets]"
    )
    assert "gsa_tutorial[widgets]" in project["optional-dependencies"]["book"]


def test_every_module_and_plotting_function_works_without_ipywidgets() -> None:
    # Import every module, then run the plotting tests, with ipywidgets and IPython blocked.
    code = BLOCK_WIDGETS + (
        "import pkgutil, importlib, pytest, gsa_tutorial\n"
        "for m in pkgutil.iter_modules(gsa_tutorial.__path__):\n"
        "    importlib.import_module('gsa_tutorial.' + m.name)\n"
        "sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', 'tests/test_plotting.py']))\n"
    )
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"without ipywidgets:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


# ---------------------------------------------------------------- release metadata


def test_citation_and_changelog_name_the_pyproject_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == version, f"CITATION.cff version {citation['version']!r} != pyproject {version!r}"
    assert citation["cff-version"] == "1.2.0" and citation["authors"] and citation["title"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version)}\]", changelog, re.MULTILINE), (
        f"CHANGELOG.md has no `## [{version}]` section for pyproject's version"
    )


def test_package_version_is_pyprojects() -> None:
    import gsa_tutorial

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert gsa_tutorial.__version__ == version, (
        f"gsa_tutorial.__version__ {gsa_tutorial.__version__!r} != pyproject.toml's {version!r}: bump both"
    )
