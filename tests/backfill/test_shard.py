"""export_historical_data.py --shard I/N: a stable split of the symbols by a hash of each name; N shards
run at once into one dataset give exactly what one run gives; a rerun fetches nothing; bad values exit 2."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from crypto_data_export.commands import backfill_cmd
from crypto_data_export.core.exit_codes import EXIT_USAGE
from crypto_data_export.settings.settings import SETTING_VARIABLES
from crypto_data_export.settings.symbols import shard_of
from crypto_data_export.store.layout import ExportFolder
from crypto_data_export.store.run_lock import RunLock
from tests.support import HANG_GUARD, cli_env, start_cli

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")  # 2 shards: ETHUSDT in 0/2, the others in 1/2
RANGE = ("--interval", "1h", "--source", "rest", "--start", "2024-02-01", "--end", "2024-02-03")
NOW = int(datetime(2024, 2, 3, 12, 30, tzinfo=UTC).timestamp() * 1000)


def test_every_symbol_falls_in_exactly_one_shard_and_the_split_never_changes() -> None:
    symbols = [f"S{i}USDT" for i in range(300)]
    for count in (1, 2, 3, 4, 7, 16):
        shares = [{s for s in symbols if shard_of(s, count) == index} for index in range(count)]
        assert sorted(s for share in shares for s in share) == sorted(symbols)  # none twice, none left out
    assert min(len(share) for share in shares) > 0
    # SHA-256 of the name, not hash(): the same in every process, on every machine, in every Python.
    assert [[shard_of(s, n) for n in (1, 2, 3, 4, 7)] for s in SYMBOLS] == [
        [0, 1, 1, 1, 4],
        [0, 0, 1, 2, 1],
        [0, 1, 2, 1, 5],
        [0, 1, 0, 1, 6],
    ]


@pytest.fixture
def backfill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, sandbox_factory: Any) -> Any:
    """backfill_cmd.main in this process (the dataset layout, the sandbox at NOW): (exit code, out, err)."""
    exchange = sandbox_factory(now_ms=NOW)
    monkeypatch.chdir(tmp_path)
    for variable in SETTING_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    env = cli_env(exchange.base_url, tmp_path / "one", EXPORT_LAYOUT="dataset", EXPORT_SYMBOLS=",".join(SYMBOLS))
    for variable, value in env.items():
        if variable in SETTING_VARIABLES:
            monkeypatch.setenv(variable, value)

    def run(*args: str) -> tuple[int, str, str]:
        code = backfill_cmd.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.exchange, run.env = exchange, env  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize("shard", ["4/4", "0/0", "-1/4", "1", "a/4", "1/4/2", " 1/4", "$(JOB_COMPLETION_INDEX)/4"])
def test_a_bad_shard_is_one_line_and_exit_2(backfill: Any, shard: str) -> None:
    code, out, err = backfill(f"--shard={shard}", *RANGE)
    assert code == EXIT_USAGE and out == "" and len(err.splitlines()) == 1 and "give I/N with 0 <= I < N" in err
    assert backfill.exchange.klines_requests() == []


def test_a_shard_without_a_symbol_does_nothing_and_says_so(backfill: Any) -> None:
    assert backfill("--shard", "0/7", *RANGE) == (0, "shard 0/7: 0 of 4 symbols; nothing to do\n", "")
    assert backfill.exchange.klines_requests() == [] and not (Path.cwd() / "one").exists()


def candles(root: Path) -> list[tuple[Any, ...]]:
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{root}/dataset/**/*.parquet', hive_partitioning = true) ORDER BY ALL"
    ).fetchall()


def test_two_shards_at_once_into_one_dataset_give_what_one_run_gives_and_a_rerun_fetches_nothing(
    backfill: Any, tmp_path: Path
) -> None:
    code, out, err = backfill(*RANGE)  # the reference: one unsharded run into tmp_path/one
    assert code == 0, err
    env = backfill.env | {"EXPORT_DIR": str(tmp_path / "shared")}
    # Each shard keeps its run lock and resume files apart: an unsharded backfill's lock held meanwhile stops neither.
    (held := ExportFolder(tmp_path / "shared").backfill).mkdir(parents=True)
    with RunLock(held):
        shards = [
            start_cli("export_historical_data.py", "--shard", s, *RANGE, env=env, cwd=tmp_path) for s in ("0/2", "1/2")
        ]
        outputs = [shard.communicate(timeout=HANG_GUARD) for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0], outputs
    assert outputs[0][0].startswith("shard 0/2: 1 of 4 symbols\nETHUSDT: 48 rows -> ")
    assert outputs[1][0].startswith("shard 1/2: 3 of 4 symbols\n")
    one, shared = tmp_path / "one" / "dataset", tmp_path / "shared" / "dataset"
    assert sorted(p.relative_to(one) for p in one.rglob("*.parquet")) == sorted(
        p.relative_to(shared) for p in shared.rglob("*.parquet")
    )
    assert candles(tmp_path / "shared") == candles(tmp_path / "one") and len(candles(tmp_path / "one")) == 4 * 48

    backfill.exchange.reset_log()  # a rerun of a shard: every period is there, nothing is fetched
    code, out, err = backfill("--shard", "1/2", *RANGE, "--output", str(tmp_path / "shared"))
    assert code == 0 and out.count("(1 periods: 1 present, 0 from the archive, 0 by REST; 0 candles fetched") == 3, (
        out + err
    )
    assert backfill.exchange.klines_requests() == []
