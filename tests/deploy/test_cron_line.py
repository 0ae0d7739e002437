"""The cron line of the README and of docs/deployment.md is the one in deploy/crontab.example,
and it works verbatim on a fresh checkout (only the install folder substituted), run by ``sh``
as cron would."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from crypto_data_export.sandbox.fake_exchange import SandboxExchange
from crypto_data_export.store.listing import scan_exports
from tests.support import HANG_GUARD, REPO, clean_environ

INSTALL = "/opt/crypto-export"
CRON_LINE = re.compile(r"^0 \*/2 \* \* \* (?P<command>cd .+)$", re.MULTILINE)


def cron_command(path: Path) -> str:
    found = CRON_LINE.findall(path.read_text(encoding="utf-8"))
    assert len(found) == 1, f"{path.name}: expected one active cron line, found {found}"
    return found[0]


def fresh_checkout(target: Path) -> Path:
    """What a clone holds: the tracked files, no historical_exports/logs."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False).stdout
    names = tracked.splitlines() or [str(p.relative_to(REPO)) for p in REPO.rglob("*.py")]
    for name in names:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def test_readme_docs_and_crontab_example_have_the_same_line() -> None:
    example = cron_command(REPO / "deploy" / "crontab.example")
    assert cron_command(REPO / "README.md") == example
    assert cron_command(REPO / "docs" / "deployment.md") == example


def test_the_cron_line_works_verbatim_on_a_fresh_checkout(tmp_path: Path, sandbox: SandboxExchange) -> None:
    install = fresh_checkout(tmp_path / "install")
    assert not (install / "historical_exports" / "logs").exists()
    command = cron_command(REPO / "README.md").replace(INSTALL, str(install))
    env = clean_environ()
    env.update(BINANCE_BASE_URL=sandbox.base_url, EXPORT_SYMBOLS="BTCUSDT,ETHUSDT", HTTP_RETRIES="1")
    # The README's install made .venv in the install folder; here it is the interpreter running the tests.
    (install / ".venv" / "bin").mkdir(parents=True)
    python = install / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env["PATH"] = "/usr/bin:/bin"  # cron's: no python of ours on it
    result = subprocess.run(
        ["sh", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD
    )
    log = install / "historical_exports" / "logs" / "cron.log"
    assert result.returncode == 0, log.read_text() if log.exists() else result.stderr
    assert {f.symbol for f in scan_exports(install / "historical_exports")} == {"BTCUSDT", "ETHUSDT"}
    assert "export: 2/2 symbols ok" in log.read_text()
