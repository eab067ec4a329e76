"""Per-call figures and the ``cache_metrics`` channel: a view of :mod:`promptcache.figures`.

The names here are kept for the code and docs that import them from this module;
:mod:`promptcache.figures` holds the one model.
"""

from __future__ import annotations

from promptcache.figures import CacheMetrics, CallFigures, CallKind, figures_from_usage, merge_cache_metrics

__all__ = ["CacheMetrics", "CallFigures", "CallKind", "figures_from_usage", "merge_cache_metrics"]
