"""A small real upstream for what the emulator does not do: hold a stream open, record headers.

:func:`held_stream_app` answers ``POST /v1/chat/completions`` as OpenAI does when streaming (SSE
chunks, a usage chunk, ``data: [DONE]``), but sends its first chunk, then waits for the test to
release it (a ``threading.Event``, bounded) before the rest: a test can act while a stream is in
flight (read through the gateway, signal the gateway) and know whether it was buffered.
``POST /v1/slow`` answers only after the release (upstream timeouts). Every request's headers
are recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

#: How long the upstream waits for a release before it goes on by itself.
HOLD_S = 20.0


@dataclass
class Held:
    """What the held upstream saw and whether it was released in time."""

    release: threading.Event = field(default_factory=threading.Event)
    first_sent: threading.Event = field(default_factory=threading.Event)
    headers: list[dict[str, str]] = field(default_factory=list)
    released_in_time: list[bool] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)


def _chunk(delta: dict[str, object], *, usage: dict[str, object] | None = None) -> bytes:
    body = {
        "id": "chatcmpl-held",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


def held_stream_app(held: Held, parts: int = 5) -> Starlette:
    """The held upstream (see the module docstring)."""

    async def chat(request: Request) -> Response:
        held.headers.append({k.lower(): v for k, v in request.headers.items()})
        await request.body()

        async def events() -> AsyncIterator[bytes]:
            yield _chunk({"role": "assistant", "content": "part 0 "})
            held.first_sent.set()
            released = await anyio.to_thread.run_sync(held.release.wait, HOLD_S)
            held.released_in_time.append(released)
            for i in range(1, parts):
                yield _chunk({"content": f"part {i} "})
            usage = {
                "prompt_tokens": 2000,
                "completion_tokens": parts * 2,
                "total_tokens": 2000 + parts * 2,
                "prompt_tokens_details": {"cached_tokens": 1536},
            }
            yield _chunk({}, usage=usage)
            yield b"data: [DONE]\n\n"
            held.finished.append(True)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def slow(request: Request) -> Response:
        held.headers.append({k.lower(): v for k, v in request.headers.items()})
        await anyio.to_thread.run_sync(held.release.wait, HOLD_S)
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/slow", slow, methods=["POST"]),
        ]
    )
