"""The file formats of export files, one class each behind ``FileFormat``.

Adding a format is adding it to ``_REGISTERED`` here: names, scans,
validation, retention, quarantine and duplicates then work for it unchanged.

The registry holds each format's name, suffix and class path only; the class
(which imports pandas, numpy and pyarrow) is loaded the first time a file of
that format is read, written or judged. So everything that only needs names
(the folder layout, ``--status`` of an empty folder, ``--health``, the service
commands) starts without those imports (``tests/test_startup.py``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_data_export.store.formats.base import Approval, CandleChunks, FileFormat, StreamChecker, Verdict
from crypto_data_export.store.validation import FileValidation

if TYPE_CHECKING:
    import pandas as pd


class LazyFormat(FileFormat):
    """A format known by name and suffix; its class is imported on first use.

    Every method is the loaded instance's, looked up at call time, so a
    patched class method (tests) is honoured as it would be without the proxy.
    """

    def __init__(self, name: str, suffix: str, class_path: str) -> None:
        self.name, self.suffix = name, suffix
        self._class_path = class_path
        self._loaded: FileFormat | None = None
        self._lock = threading.Lock()  # the export job's threads may ask at once

    def loaded(self) -> FileFormat:
        """The format's own instance (imported now if it is the first use)."""
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    module_name, class_name = self._class_path.split(":")
                    instance = getattr(importlib.import_module(module_name), class_name)()
                    if (instance.name, instance.suffix) != (self.name, self.suffix):
                        raise TypeError(f"{self._class_path} is {instance.name!r}, registered as {self.name!r}")
                    self._loaded = instance
        return self._loaded

    def write(
        self, target: Path, chunks: CandleChunks, interval: str, *, approve: Approval | None = None
    ) -> FileValidation:
        return self.loaded().write(target, chunks, interval, approve=approve)

    def read(self, path: Path) -> pd.DataFrame:
        return self.loaded().read(path)

    def read_closes(self, path: Path) -> list[float]:
        return self.loaded().read_closes(path)

    def check_bytes(self, data: bytes, interval: str, path: Path, *, want_candles: bool = False) -> Verdict:
        return self.loaded().check_bytes(data, interval, path, want_candles=want_candles)

    def stream_checker(self, interval: str, path: Path, *, want_candles: bool = False) -> StreamChecker:
        return self.loaded().stream_checker(interval, path, want_candles=want_candles)

    def validate_many(self, items: Iterable[tuple[bytes, str, Path]]) -> list[FileValidation]:
        return self.loaded().validate_many(items)

    def __getattr__(self, attribute: str) -> Any:
        # Only called for what the proxy lacks: anything else a format class offers.
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.loaded(), attribute)

    def __repr__(self) -> str:
        return f"LazyFormat({self.name!r}, {self.suffix!r})"


CSV = LazyFormat("csv", ".csv", "crypto_data_export.store.formats.csv_format:CsvFormat")
PARQUET = LazyFormat("parquet", ".parquet", "crypto_data_export.store.formats.parquet_format:ParquetFormat")
_REGISTERED: tuple[FileFormat, ...] = (CSV, PARQUET)
FORMATS: dict[str, FileFormat] = {f.name: f for f in _REGISTERED}
DEFAULT_FORMAT: FileFormat = CSV


def format_for_name(file_name: str) -> FileFormat | None:
    """The format a file name's ending says, or None for names that are not ours."""
    for file_format in FORMATS.values():
        if file_name.endswith(file_format.suffix):
            return file_format
    return None
