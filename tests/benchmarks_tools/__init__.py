"""Tests of the benchmark tooling; the package puts the repository root on ``sys.path`` for ``benchmarks``."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parents[2]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
