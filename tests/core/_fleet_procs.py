"""Worker side of the fleet-learning test (must be importable by spawn): one process of a fleet."""

from __future__ import annotations

from typing import Any

SYSTEM = "You are the support agent of Acme.\n" * 60 + "Current time: {now}\nAnswer briefly.\n"


def never_now() -> float:
    """A clock no value of these prompts gives (1970): a clock line is kept in place until the
    family sees it change, whatever today's date (a value giving the request's time would move
    from the first call)."""
    return 0.0


def body(now: str, question: str) -> dict[str, Any]:
    """A request of the family: the clock in the system prompt, a question."""
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": SYSTEM.format(now=now)},
            {"role": "user", "content": question},
        ],
    }


def first_call(location: str, fleet: bool, worker: int, q_out: Any) -> None:
    """This worker's first request of the family: report its prefix key and what it moved."""
    from promptcache import PromptCache

    cache = PromptCache(store=location, fleet=fleet, record_stats=False, clock=never_now)
    now = f"2026-12-07T10:{worker:02d}:00Z"
    p = cache.prepare_request(body(now, f"hello from worker {worker}"), format="openai-chat", tenant="acme")
    q_out.put((worker, p.plan.prefix_key, len(p.plan.fragments)))
    cache.close()


def tools_body(names: list[str]) -> dict[str, Any]:
    """A request of the family whose tools are ``names``, in that order."""
    tools = [
        {
            "type": "function",
            "function": {"name": n, "description": f"Tool {n}.", "parameters": {"type": "object"}},
        }
        for n in names
    ]
    return {**body("2026-12-07T10:00:00Z", "hi"), "tools": tools}


def first_tools_call(location: str, names: list[str], worker: int, q_out: Any) -> None:
    """This worker's first request with the tools ``names``: report the order it sends them in."""
    from promptcache import PromptCache

    cache = PromptCache(store=location, record_stats=False, clock=never_now)
    sent = cache.prepare_request(tools_body(names), format="openai-chat", tenant="acme").body["tools"]
    q_out.put((worker, [t["function"]["name"] for t in sent]))
    cache.close()
