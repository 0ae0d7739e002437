"""File management of the export folder, by hand: validate, find duplicates, clean up.

The guide's entry point; the code is ``crypto_data_export.commands.files_cmd``, also installed
as the console command ``file-manager``.
"""

from crypto_data_export.commands.files_cmd import FileManager, main, run

__all__ = ["FileManager", "main"]

if __name__ == "__main__":
    run()
