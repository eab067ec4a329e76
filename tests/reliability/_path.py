"""Put the repository root on ``sys.path`` so the tests share the benchmark's corpora and cases."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
