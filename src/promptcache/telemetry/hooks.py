"""The hook point: observers, ``emit``, ``span`` and the labels of the current call.

The engine and the integrations call :func:`emit` and :func:`span`. With no observer and no
tracer configured both return at once (one global read), so an uninstrumented process pays
nothing measurable and needs no OpenTelemetry installed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from promptcache.telemetry.events import Event

__all__ = [
    "NOOP_SPAN",
    "Observer",
    "SpanLike",
    "add_observer",
    "capture_content",
    "configure",
    "current_agent",
    "emit",
    "enabled",
    "labels",
    "observers",
    "remove_observer",
    "set_tracer",
    "span",
    "tracing",
]

log = logging.getLogger("promptcache.telemetry")


@runtime_checkable
class Observer(Protocol):
    """Receives every event; must be fast and must not raise (errors are logged and dropped)."""

    def on_event(self, event: Event) -> None:
        """Handle one event."""
        ...


class SpanLike(Protocol):
    """What :func:`span` yields: an OpenTelemetry span, or the no-op stand-in."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute."""
        ...

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes."""
        ...

    def is_recording(self) -> bool:
        """False for the no-op span: callers skip computing attributes nobody reads."""
        ...


class _NoopSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: Any) -> None:
        """Ignore."""

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Ignore."""

    def is_recording(self) -> bool:
        """Never recording."""
        return False


NOOP_SPAN = _NoopSpan()

# Copy-on-write tuple: emit() reads it without a lock.
_observers: tuple[Observer, ...] = ()
_lock = threading.Lock()
_tracer: Any = None  # an opentelemetry Tracer once configured
_agent: contextvars.ContextVar[str] = contextvars.ContextVar("promptcache_agent", default="")
_capture_content = False


def configure(*, capture_content: bool = False) -> None:
    """Process-wide telemetry settings.

    ``capture_content=True`` is an explicit opt-in to content-derived attributes
    (``promptcache.content.*``); the default exports hashes, sizes and counts only.
    """
    global _capture_content
    _capture_content = capture_content


def capture_content() -> bool:
    """Whether the user opted in to content-derived attributes."""
    return _capture_content


def add_observer(observer: Observer) -> Observer:
    """Start sending events to ``observer``; returns it (for ``remove_observer``)."""
    global _observers
    with _lock:
        if observer not in _observers:
            _observers = (*_observers, observer)
    return observer


def remove_observer(observer: Observer) -> None:
    """Stop sending events to ``observer`` (no error if it was not registered)."""
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o is not observer)


def observers() -> tuple[Observer, ...]:
    """The registered observers."""
    return _observers


def set_tracer(tracer: Any) -> None:
    """Use ``tracer`` (an OpenTelemetry ``Tracer``) for :func:`span`; ``None`` turns spans off."""
    global _tracer
    _tracer = tracer


def tracing() -> bool:
    """Whether a tracer is configured (spans are recorded)."""
    return _tracer is not None


def enabled() -> bool:
    """Whether anything listens (an observer or a tracer): instrumentation skips its work otherwise."""
    return bool(_observers) or _tracer is not None


def emit(event: Event) -> None:
    """Hand ``event`` to every observer. An observer that raises is logged, never the caller's problem."""
    for o in _observers:
        try:
            o.on_event(event)
        except Exception:  # telemetry must never fail the agent's call
            log.exception("telemetry observer %r failed", o)


@contextlib.contextmanager
def _otel_span(name: str, attributes: Mapping[str, Any] | None, kind: str) -> Iterator[SpanLike]:
    from opentelemetry.trace import SpanKind

    k = SpanKind.CLIENT if kind == "client" else SpanKind.INTERNAL
    with _tracer.start_as_current_span(name, kind=k, attributes=dict(attributes or {})) as sp:
        yield sp


def record_span(
    name: str,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "client",
) -> None:
    """Export a span that already happened (known start and end), when a tracer is configured.

    For work observed after the fact, such as a provider call whose end is only
    known when its stream finished.
    """
    if _tracer is None:
        return
    from opentelemetry.trace import SpanKind

    k = SpanKind.CLIENT if kind == "client" else SpanKind.INTERNAL
    sp = _tracer.start_span(name, kind=k, attributes=dict(attributes or {}), start_time=start_ns)
    sp.end(end_time=end_ns)


class _Noop(contextlib.AbstractContextManager[SpanLike]):
    """The span context when no tracer is set: one shared instance, no generator
    frame per call (it wraps every prepare_request)."""

    def __enter__(self) -> SpanLike:
        return NOOP_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NOOP = _Noop()


def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: str = "internal"
) -> contextlib.AbstractContextManager[SpanLike]:
    """A span named ``name`` when a tracer is configured, else a no-op context.

    ``kind`` is ``"internal"`` or ``"client"`` (a request leaving the process). Exceptions
    propagate and are recorded on the span by OpenTelemetry.
    """
    if _tracer is None:
        return _NOOP
    return _otel_span(name, attributes, kind)


def current_agent() -> str:
    """The agent label of the current call ("" when none was set)."""
    return _agent.get()


@contextlib.contextmanager
def labels(*, agent: str) -> Iterator[None]:
    """Attribute the events inside the block to ``agent`` (LangGraph node, agent name...)."""
    token = _agent.set(agent)
    try:
        yield
    finally:
        _agent.reset(token)
