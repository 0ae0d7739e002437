"""Log messages are one line each: control characters from foreign values are escaped."""

from __future__ import annotations

import logging
from pathlib import Path

from crypto_data_export.report.logging_setup import configure_logging


def test_a_message_cannot_forge_a_log_line_but_a_traceback_keeps_its_lines(tmp_path: Path) -> None:
    configure_logging(tmp_path, "INFO")
    logger = logging.getLogger("scheduled_data_manager")
    try:
        logger.warning("value %s", "\x1b[31mred\rINFO forged\nsecond")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed on %s", "a\nb")
    finally:
        configure_logging(None, "INFO")
    lines = (tmp_path / "logs" / "scheduled_data_manager.log").read_text().splitlines()
    assert lines[0].endswith("value \\x1b[31mred\\rINFO forged\\nsecond")
    assert lines[1].endswith("failed on a\\nb") and lines[2] == "Traceback (most recent call last):"
    assert not any(line.startswith("INFO forged") or line == "second" for line in lines)
