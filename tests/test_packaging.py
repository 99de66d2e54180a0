"""The set-up story stays consistent: pyproject, environment.yml, Makefile, README and CI."""
from __future__ import annotations

import re
import tomllib

from conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["dev"] + extras["lab"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_requirements() -> dict[str, str]:
    reqs = {}
    for line in (REPO / "environment.yml").read_text().splitlines():
        item = re.match(r"\s+- (.+)$", line)
        if not item:
            continue
        text = item.group(1).strip()
        if text.startswith(("--", "-e", "python=")) or text in ("pip", "pip:", "conda-forge"):
            continue
        reqs[_name(text)] = text.replace(" ", "")
    return reqs


def test_environment_yml_matches_pyproject():
    pyproject, environment = _pyproject_requirements(), _environment_requirements()
    assert set(environment) == set(pyproject), set(environment) ^ set(pyproject)
    for name, spec in pyproject.items():
        if name != "torch":  # conda pins the CPU build; pyproject keeps a range for GPU machines
            assert environment[name] == spec, (name, environment[name], spec)
    assert environment["torch"] == "torch==2.13.0"


def test_readme_commands_are_the_makefile_targets_and_ci_runs_the_test_command():
    readme, makefile = (REPO / "README.md").read_text(), (REPO / "Makefile").read_text()
    for command in ("make reproduce", "make test"):
        assert command in readme
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_cpu_installs_pin_torch():
    script = (REPO / "scripts" / "setup_venv.sh").read_text()
    assert "torch==2.13.0" in script
