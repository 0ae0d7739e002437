"""File management of the export folder, by hand: validate, find duplicates, clean up."""

from crypto_data_export.commands.files_cmd import FileManager, main, run

__all__ = ["FileManager", "main"]

if __name__ == "__main__":
    run()
