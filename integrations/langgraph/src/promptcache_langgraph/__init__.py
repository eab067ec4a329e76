"""promptcache for LangGraph: cache figures in graph state, node wrappers, tenant-aware node-cache keys.

* :class:`CacheMetricsState` — mix into a state schema to get a ``cache_metrics`` channel whose
  reducer (:func:`merge_cache_metrics`) merges per-call records: commutative, associative and
  idempotent, so parallel branches, subgraphs handing their channel back and LangGraph's node
  cache replays never double count. ``create_agent`` with ``PromptCacheMiddleware`` uses the
  same channel (:class:`CacheMetricsChannel`), whose value read back from a checkpointer is a
  :class:`CacheMetrics` too.
* :func:`cache_node` — wrap a node so the model calls made inside it land in that channel (and in
  ``promptcache.stats.recorder_for(cache)``).
* :func:`cached_tool_node` — a ``ToolNode`` whose declared tools are served from ``cache.tools``
  (writes invalidate, side-effecting tools always run), each call recorded in ``cache_metrics``.
* :func:`tenant_cache_key` — a ``CachePolicy(key_func=...)`` over the tenant (from the run config,
  as everywhere), the graph and the input's content. LangGraph's default node-cache key
  (``default_cache_key``) hashes the node input only: two tenants with the same input would share
  one cached node result, messages without ids never hit twice, and graphs sharing a cache can
  read each other's entries.
* :func:`node_cache` — the node cache to compile with (``g.compile(cache=node_cache())``): a run
  served from it reports local hits in ``cache_metrics``, not the stored run's provider calls.
"""

from promptcache_langchain.channel import CacheMetricsChannel

from promptcache.metrics import CacheMetrics, CallFigures, merge_cache_metrics
from promptcache_langgraph.node_cache import NodeCache, node_cache
from promptcache_langgraph.nodes import cache_node
from promptcache_langgraph.state import CacheMetricsState
from promptcache_langgraph.tenancy import tenant_cache_key
from promptcache_langgraph.tools import cached_tool_node

__all__ = [
    "CacheMetrics",
    "CacheMetricsChannel",
    "CacheMetricsState",
    "CallFigures",
    "NodeCache",
    "cache_node",
    "cached_tool_node",
    "merge_cache_metrics",
    "node_cache",
    "tenant_cache_key",
]
