"""Reliability guards (issue 9); the package puts the repository root on ``sys.path`` for ``benchmarks``."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
