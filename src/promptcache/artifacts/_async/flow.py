"""The I/O edge of the artifact flow, written once.

``artifacts/_async/`` holds the source; ``artifacts/_sync/`` is generated from it
(scripts/gen_sync.py). The flow itself is :func:`promptcache.artifacts._flow._steps`;
this performs the I/O its steps ask for.
"""

from __future__ import annotations

from typing import Any, TypeVar

from promptcache.artifacts._common import LookupResult
from promptcache.artifacts._flow import (
    AsyncThunk,
    Box,
    Call,
    Op,
    produce,
    put_args,
    raise_users_error,
    steps,
    where,
)
from promptcache.tiers.outcome import Produced

__all__ = ["arun"]

T = TypeVar("T")


async def arun(call: Call[T], compute: AsyncThunk[T]) -> tuple[T, LookupResult]:
    """Serve ``call`` from the store, or compute it (once across concurrent callers) and maybe store it."""
    box = Box()

    async def fill() -> Produced:
        try:
            box.value = await compute()
        except Exception as exc:  # the user's: carried to the edge as data, raised there
            box.produced = Produced(error=exc)
        else:
            box.produced = produce(call, box.value)
        return box.produced

    async def io(op: Op) -> Any:
        if op[0] == "get_or_compute":
            return await call.store.aget_or_compute(call.key, fill, **where(call), ttl_s=call.planned_ttl_s)
        if op[0] == "current_generations":
            return await call.store.acurrent_generations(list(call.tags), tenant=call.tenant)
        return await call.store.aput(call.key, op[1].payload or b"", **where(call), **put_args(op))

    flow = steps(call, box)
    try:
        op = next(flow)  # the first step always yields
        while True:
            exc: Exception | None = None
            if op[0] == "compute":  # never thrown into the steps: the user's exception is the user's
                out = await compute()
            else:
                try:
                    out = await io(op)
                except Exception as err:
                    out, exc = None, err
                raise_users_error(out)
            try:  # only the steps' own end is caught here, never a user's StopIteration
                op = flow.send(out) if exc is None else flow.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()
