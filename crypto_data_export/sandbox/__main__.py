"""``python -m crypto_data_export.sandbox --port 0``: run the sandbox exchange (see ``fake_exchange``)."""

from __future__ import annotations

import sys

from crypto_data_export.sandbox.fake_exchange import main

sys.exit(main())
