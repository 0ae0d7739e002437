"""The layout of ARCHITECTURE.md, checked: layers import downward only, no cycles
(imports inside functions and under TYPE_CHECKING count), no package imports a
root script, and the root keeps only the guide's entry scripts."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

GUIDE_SCRIPTS = (
    "scheduled_data_manager.py",
    "data_export_service.py",
    "file_manager.py",
    "export_historical_data.py",
    "demo_scheduled_system.py",
    "test_scheduled_system.py",
)
GUIDE_CLASSES = {
    "scheduled_data_manager": "ScheduledDataManager",
    "file_manager": "FileManager",
    "export_historical_data": "HistoricalDataExporter",
    "data_export_service": "DataExportService",
}
# layer (a subpackage of crypto_data_export) -> the layers it may import (besides itself);
# see ARCHITECTURE.md
PACKAGE = "crypto_data_export"
FOUNDATIONS = {"core", "settings"}
DOMAIN = FOUNDATIONS | {"exchange", "store"}
ALLOWED = {
    "core": set(),
    "settings": {"core"},
    "exchange": {"core", "settings"},
    "store": {"core", "settings"},
    "sandbox": FOUNDATIONS,
    "pipeline": DOMAIN,
    "report": DOMAIN | {"pipeline"},
    "scheduler": DOMAIN | {"pipeline", "report"},
    "backfill": DOMAIN | {"pipeline", "report"},
    "service": DOMAIN | {"report"},
    "commands": DOMAIN | {"pipeline", "report", "scheduler", "backfill", "service", "sandbox"},
    "config": FOUNDATIONS,  # the guide's config/symbols_config.py
}
ROOT_MODULES = tuple(name.removesuffix(".py") for name in GUIDE_SCRIPTS)


def project_modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of ours (tests and benchmarks excluded)."""
    modules = {path.stem: path for path in REPO.glob("*.py")}
    modules["config.symbols_config"] = REPO / "config" / "symbols_config.py"
    for path in (REPO / PACKAGE).rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = project_modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def package_of(module: str) -> str:
    """The layer of a module: ``crypto_data_export.store.scan`` -> ``store``."""
    parts = module.split(".")
    if parts[0] == PACKAGE:
        return parts[1] if len(parts) > 2 else PACKAGE
    return parts[0]


def test_the_root_keeps_only_the_guides_entry_scripts() -> None:
    root_scripts = sorted(path.name for path in REPO.glob("*.py"))
    assert len(root_scripts) <= 8, root_scripts
    assert set(GUIDE_SCRIPTS) <= set(root_scripts)


def test_layers_import_downward_only() -> None:
    wrong = []
    for module, imported in import_graph().items():
        if module in ROOT_MODULES:
            continue
        package = package_of(module)
        if package == PACKAGE:
            continue  # the package's own __init__
        for target in imported:
            other = package_of(target)
            if other != package and other not in ALLOWED[package]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_package_imports_a_root_script() -> None:
    graph = import_graph()
    offenders = [
        f"{module} imports {target}"
        for module, imported in graph.items()
        if module not in ROOT_MODULES
        for target in imported
        if target in ROOT_MODULES
    ]
    assert offenders == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_exchange_never_touches_files_and_the_store_never_touches_http() -> None:
    graph = import_graph()
    for module, imported in graph.items():
        if package_of(module) == "exchange":
            assert (
                not {
                    "crypto_data_export.core.atomic_io",
                    "crypto_data_export.core.reading",
                    "crypto_data_export.core.logfiles",
                }
                & imported
            ), module
    for module, path in project_modules().items():
        if package_of(module) == "store":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            third_party = {
                alias.name.split(".")[0]
                for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
            }
            assert not {"requests", "urllib3", "http"} & third_party, module


@pytest.mark.parametrize("script", GUIDE_SCRIPTS)
def test_every_entry_script_answers_help(script: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]


@pytest.mark.parametrize(("module", "name"), sorted(GUIDE_CLASSES.items()))
def test_the_guides_class_names_are_importable_from_the_scripts(module: str, name: str) -> None:
    code = f"from {module} import {name}; print({name}.__name__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == name, result.stderr


def test_architecture_md_lists_every_module_and_only_existing_ones() -> None:
    """ARCHITECTURE.md has one line per module (empty ``__init__.py`` files aside), naming it by path."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`((?:crypto_data_export|config)/[\w/]+\.py|\w+\.py)`", text))
    modules = {
        str(path.relative_to(REPO))
        for path in project_modules().values()
        if path.name != "__init__.py" or path.read_text(encoding="utf-8").strip()
    }
    assert sorted(modules - listed) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(name for name in listed if not (REPO / name).is_file()) == [], "listed but not there"


def test_no_two_modules_share_a_file_name() -> None:
    names = [path.name for path in project_modules().values() if path.name not in ("__init__.py", "__main__.py")]
    assert sorted(name for name in set(names) if names.count(name) > 1) == []
