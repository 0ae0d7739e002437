"""``python -m sandbox --port 0``: run the sandbox exchange (see ``sandbox.exchange``)."""

from __future__ import annotations

import sys

from sandbox.exchange import main

sys.exit(main())
