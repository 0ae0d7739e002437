"""pyproject.toml and the requirements files of the README's two commands name the same
dependencies, and nothing built is tracked."""

from __future__ import annotations

import subprocess
import tomllib

from tests.support import REPO


def requirement_lines(name: str) -> set[str]:
    lines = (REPO / name).read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("#", "-r"))}


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_runtime_dependencies_match_requirements_txt() -> None:
    assert set(project()["dependencies"]) == requirement_lines("requirements.txt")


def test_dev_dependencies_match_requirements_dev_txt() -> None:
    assert set(project()["optional-dependencies"]["dev"]) == requirement_lines("requirements-dev.txt")


def test_every_dependency_has_a_lower_bound() -> None:
    for requirement in requirement_lines("requirements.txt") | requirement_lines("requirements-dev.txt"):
        assert ">=" in requirement, requirement


def test_no_build_artifact_is_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False).stdout
    if not tracked:  # not a git checkout (e.g. an unpacked archive): nothing is tracked
        return
    artifacts = [
        name
        for name in tracked.splitlines()
        if name.endswith((".whl", ".egg", ".pyc", ".so")) or name.split("/")[0] in {"dist", "build"}
    ]
    assert artifacts == []
