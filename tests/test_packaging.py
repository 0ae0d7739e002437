"""pyproject.toml and the requirements files of the README's two commands name the same
dependencies, nothing built is tracked, tests read their data inside the repository, and the
links of the README and docs/ lead somewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from crypto_data_export.sandbox.fake_exchange import SandboxExchange
from tests.support import REPO, manager_env


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


CONSOLE_COMMANDS = {
    "scheduled-data-manager": "scheduled_data_manager.py",
    "data-export-service": "data_export_service.py",
    "file-manager": "file_manager.py",
    "export-historical-data": "export_historical_data.py",
    "demo-scheduled-system": "demo_scheduled_system.py",
    "test-scheduled-system": "test_scheduled_system.py",
}


def test_every_guide_script_has_a_console_command() -> None:
    scripts = project()["scripts"]
    assert set(scripts) == set(CONSOLE_COMMANDS)
    for command, script in CONSOLE_COMMANDS.items():
        module = scripts[command].partition(":")[0]
        assert f"from {module} import" in (REPO / script).read_text(encoding="utf-8"), (command, script)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install .`` of the checkout into a folder of its own (no dependencies: the test's
    interpreter has them), as a user installs it: a real build of the package, not the checkout."""
    source = tmp_path_factory.mktemp("source")  # a copy: the build leaves its build/ folder there
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "crypto_data_export", source / "crypto_data_export", ignore=shutil.ignore_patterns("__pycache__")
    )
    target = tmp_path_factory.mktemp("installed")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return target


def test_pip_install_gives_console_commands_that_export_from_another_folder(
    installed: Path, tmp_path: Path, sandbox: SandboxExchange
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = manager_env(tmp_path / "exports", sandbox.base_url, symbols="BTCUSDT")
    env["PYTHONPATH"] = str(installed)
    for command in CONSOLE_COMMANDS:
        assert (installed / "bin" / command).is_file(), command
    result = subprocess.run(
        [str(installed / "bin" / "scheduled-data-manager"), "--export-only"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "exports").glob("BTCUSDT_1h_*.csv")], result.stdout
    assert list(elsewhere.iterdir()) == []
    # The package came from the install, not from the checkout.
    probe = "import crypto_data_export, sys; print(crypto_data_export.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(installed)), where.stdout


def test_tests_read_their_data_inside_the_repository() -> None:
    """A test that reads data beside the checkout (``REPO.parent``) or by one machine's absolute
    path skips everywhere else; what a test reads is in tests/data/."""
    this = Path(__file__).name
    for path in (REPO / "tests").rglob("*"):
        if path.suffix not in (".py", ".md") or path.name == this:
            continue
        text = path.read_text(encoding="utf-8")
        assert "REPO.parent" not in text and f"{REPO.parent}/" not in text, path.relative_to(REPO)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_of_the_readme_and_docs_leads_somewhere() -> None:
    """The README points into docs/ and the pages point at each other: a moved section must not
    leave a link to nothing."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor:
                assert anchor in _anchors(linked), f"{page.name}: {target}"
