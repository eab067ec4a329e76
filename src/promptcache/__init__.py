"""promptcache: prompt caching for agent frameworks.

>>> from promptcache import PromptCache
>>> PromptCache().prepare_request(
...     {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, format="openai-chat"
... ).plan.tenant
'default'
"""

from promptcache.blocks import Block, BlockKind, Stability, Trust
from promptcache.catalog import load_catalog
from promptcache.engine import PromptCache
from promptcache.figures import CacheMetrics, CallFigures, Totals, merge_cache_metrics
from promptcache.formats import WireFormat
from promptcache.keys import KeyContract, derive_key
from promptcache.plan import Plan, Prepared
from promptcache.policy import Policy, PolicyError
from promptcache.pricing import cost
from promptcache.providers.usage import usage_from_response, usage_from_stream
from promptcache.stats import CacheStats
from promptcache.usage import CacheUsage
from promptcache.wire import WireFormatError

__all__ = [
    "Block",
    "BlockKind",
    "CacheMetrics",
    "CacheStats",
    "CacheUsage",
    "CallFigures",
    "KeyContract",
    "Plan",
    "Policy",
    "PolicyError",
    "Prepared",
    "PromptCache",
    "Stability",
    "Totals",
    "Trust",
    "WireFormat",
    "WireFormatError",
    "cost",
    "derive_key",
    "load_catalog",
    "merge_cache_metrics",
    "usage_from_response",
    "usage_from_stream",
]
