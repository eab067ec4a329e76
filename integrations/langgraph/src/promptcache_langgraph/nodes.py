"""``cache_node``: the model calls made inside a node, in the graph's ``cache_metrics`` channel."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.types import Command
from promptcache_langchain import UsageCollector
from promptcache_langchain.tenant import runtime_context

from promptcache import PromptCache
from promptcache.metrics import CacheMetrics, merge_cache_metrics
from promptcache.rerun import akeep_pending, atake_pending, keep_pending, take_pending
from promptcache.tenancy import DEFAULT_TENANT_KEY, resolve_tenant

__all__ = ["cache_node"]


def _with_handler(config: RunnableConfig, handler: UsageCollector) -> RunnableConfig:
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        new: Any = manager
    else:
        new = [*(callbacks or []), handler]
    return {**config, "callbacks": new}


def _merge_update(result: Any, metrics: CacheMetrics, channel: str) -> Any:
    if not metrics.records:
        return result
    if result is None:
        return {channel: metrics}
    if isinstance(result, Command):
        update = result.update
        if update is None or isinstance(update, Mapping):
            merged = dict(update or {})
            merged[channel] = merge_cache_metrics(merged.get(channel), metrics)
            return Command(graph=result.graph, update=merged, resume=result.resume, goto=result.goto)
        return result  # a list-of-tuples update: left alone rather than guessed at
    if isinstance(result, Mapping):
        merged = dict(result)
        merged[channel] = merge_cache_metrics(merged.get(channel), metrics)
        return merged
    return result  # a pydantic/dataclass state object: the node owns its shape


def _step(config: RunnableConfig | None) -> str | None:
    """The durable identity of the node's task: the same when it runs again after an interrupt.

    The thread (a resume needs a checkpointer, hence a thread id) and the task's checkpoint
    namespace, which names the node and its task id (derived from the checkpoint the task runs
    from, so a resumed task has the same one), under every parent graph's. None outside a thread.
    """
    configurable = (config or {}).get("configurable") or {}
    thread, ns = configurable.get("thread_id"), configurable.get("checkpoint_ns")
    if thread is None or not ns:
        return None
    return f"{thread}\x00{ns}"


def _accepts_config(fn: Callable[..., Any]) -> bool:
    try:
        return "config" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def cache_node(
    fn: Callable[..., Any],
    cache: PromptCache,
    *,
    tenant_key: str = DEFAULT_TENANT_KEY,
    channel: str = "cache_metrics",
) -> Callable[..., Any]:
    """Wrap a node function (sync or async) so its model calls are added to ``channel``.

    Every chat model call made inside the node — through the config LangGraph passes or the
    ambient one — is observed by a callback, priced, and returned with the node's update as a
    ``CacheMetrics`` of those calls only (the reducer merges it). Calls not already recorded
    by ``CachingChatModel``/``PromptCacheMiddleware`` feed ``cache.stats()`` under the run's
    tenant (``configurable``/``metadata`` ``tenant_key``, then the runtime context, then the
    node's state: the core's one order). The node's own update is unchanged.
    Use ``CachingChatModel`` inside the node to also rewrite the requests.

    A node that stops before it finishes (``interrupt()``, an error) is run again from its start
    when the thread resumes, and LangGraph keeps none of the stopped attempt's writes: in a
    thread (``configurable["thread_id"]``), the figures of the calls the stopped attempt made are
    kept in ``cache``'s store (:mod:`promptcache.rerun`) and added to the node's update when the
    same task finishes, so a call billed before an ``interrupt()`` is still counted once.
    """
    pass_config = _accepts_config(fn)

    def _prepare(state: Any, config: RunnableConfig | None) -> tuple[UsageCollector, RunnableConfig]:
        config = config or {}
        tenant = resolve_tenant(
            cache, tenant_key, config=config, runtime_context=runtime_context(), state=state
        )
        collector = UsageCollector(cache, tenant)
        return collector, _with_handler(config, collector)

    if inspect.iscoroutinefunction(fn):

        async def anode(state: Any, config: RunnableConfig) -> Any:
            collector, cfg = _prepare(state, config)
            scope, tenant = _step(config), collector.tenant
            earlier = await atake_pending(cache, scope, tenant) if scope and tenant else CacheMetrics()
            token = var_child_runnable_config.set(cfg)
            try:
                result = await (fn(state, config=cfg) if pass_config else fn(state))
            except Exception:
                if scope and tenant:
                    await akeep_pending(
                        cache, scope, tenant, merge_cache_metrics(earlier, collector.cache_metrics)
                    )
                raise
            finally:
                var_child_runnable_config.reset(token)
            return _merge_update(result, merge_cache_metrics(earlier, collector.cache_metrics), channel)

        return _named(anode, fn)

    def node(state: Any, config: RunnableConfig) -> Any:
        collector, cfg = _prepare(state, config)
        # A step that stopped before (interrupt(), an error) and runs again: the calls its
        # stopped attempts paid for, which LangGraph kept none of.
        scope, tenant = _step(config), collector.tenant
        earlier = take_pending(cache, scope, tenant) if scope and tenant else CacheMetrics()
        # The ambient config too: model calls inside that pass no config still see the handler.
        token = var_child_runnable_config.set(cfg)
        try:
            result = fn(state, config=cfg) if pass_config else fn(state)
        except Exception:
            # interrupt() raises through here: the billed calls are kept for the resumed run.
            if scope and tenant:
                keep_pending(cache, scope, tenant, merge_cache_metrics(earlier, collector.cache_metrics))
            raise
        finally:
            var_child_runnable_config.reset(token)
        return _merge_update(result, merge_cache_metrics(earlier, collector.cache_metrics), channel)

    return _named(node, fn)


def _named(wrapper: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    # Not functools.wraps: its __wrapped__ would make LangGraph read fn's signature and stop
    # passing the config the wrapper needs. Only the name (LangGraph's default node name).
    wrapper.__name__ = getattr(fn, "__name__", wrapper.__name__)
    wrapper.__qualname__ = getattr(fn, "__qualname__", wrapper.__qualname__)
    wrapper.__doc__ = fn.__doc__
    return wrapper
