"""``python -m tests.perf``: run the benchmark harness (see harness.py for the options)."""

from __future__ import annotations

import sys

from .harness import main

sys.exit(main())
