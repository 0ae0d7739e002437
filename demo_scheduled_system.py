"""An offline tour of the whole system, on the built-in sandbox exchange.

The guide's entry point; the code is ``crypto_data_export.commands.demo_cmd``, also installed
as the console command ``demo-scheduled-system``.
"""

from crypto_data_export.commands.demo_cmd import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
