"""The file formats of export files, one class each behind ``FileFormat`` (ARCHITECTURE.md: adding a format)."""

from __future__ import annotations

from crypto_data_export.store.formats.base import FileFormat
from crypto_data_export.store.formats.csv_format import CsvFormat
from crypto_data_export.store.formats.parquet_format import ParquetFormat

CSV: FileFormat = CsvFormat()
PARQUET: FileFormat = ParquetFormat()
FORMATS: dict[str, FileFormat] = {f.name: f for f in (CSV, PARQUET)}
DEFAULT_FORMAT: FileFormat = CSV


def format_named(name: str, numbers: str = "float") -> FileFormat:
    """The format of an EXPORT_FORMAT value, Parquet with DATASET_NUMBERS' number types."""
    return ParquetFormat(numbers) if name == PARQUET.name and numbers != "float" else FORMATS[name]


def format_for_name(file_name: str) -> FileFormat | None:
    """The format a file name's ending says, or None for names that are not ours."""
    for file_format in FORMATS.values():
        if file_name.endswith(file_format.suffix):
            return file_format
    return None
