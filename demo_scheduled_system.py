"""An offline tour of the whole system, on the built-in sandbox exchange."""

from crypto_data_export.commands.demo_cmd import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
