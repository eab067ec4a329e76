"""Support for the tool-caching tests: the real tau-bench airline tools over a small counting backend.

The tools carry the real schemas and descriptions (``tau_bench_airline_tools.json``); their
backing functions read and write an in-memory reservation table and count every call, so a test
can tell a served call (backing function not called) from a run one, and a fresh read after a
write from a stale one. Shared by the LangChain and LangGraph test modules (no fixtures here).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from langchain_core.tools import StructuredTool

from promptcache.artifacts import ToolSpec
from promptcache.lab.bundled import AGENTS

RES = "4OG6T3"

#: The declarations an airline deployment would make (what the tests pass as tool_specs=).
AIRLINE_SPECS: dict[str, ToolSpec] = {
    "get_reservation_details": ToolSpec(
        name="get_reservation_details", side_effect="read_only", tags=("reservation:{reservation_id}",)
    ),
    "get_user_details": ToolSpec(name="get_user_details", side_effect="read_only", tags=("user:{user_id}",)),
    "search_direct_flight": ToolSpec(name="search_direct_flight", side_effect="read_only", ttl=60),
    "list_all_airports": ToolSpec(name="list_all_airports", side_effect="pure"),
    "calculate": ToolSpec(name="calculate", side_effect="pure"),
    "update_reservation_baggages": ToolSpec(
        name="update_reservation_baggages",
        side_effect="idempotent_write",
        invalidates=("reservation:{reservation_id}",),
    ),
    "cancel_reservation": ToolSpec(
        name="cancel_reservation", side_effect="side_effecting", invalidates=("reservation:{reservation_id}",)
    ),
    # send_certificate, book_reservation, think, transfer_to_human_agents: undeclared (always run)
}


def airline_schemas() -> list[dict[str, Any]]:
    """The real airline tool schemas (OpenAI function format)."""
    data: list[dict[str, Any]] = json.loads((AGENTS / "tau_bench_airline_tools.json").read_text())
    return data


class Backend:
    """The airline's systems: one reservation and one user, with a call counter per tool."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.reservations = {
            RES: {"reservation_id": RES, "user_id": "mia_li_3668", "total_baggages": 1, "nonfree_baggages": 0}
        }

    def run(self, name: str, args: dict[str, Any]) -> str:
        self.calls[name] += 1
        if name == "get_reservation_details":
            return json.dumps(self.reservations[args["reservation_id"]])
        if name == "update_reservation_baggages":
            r = self.reservations[args["reservation_id"]]
            r["total_baggages"], r["nonfree_baggages"] = args["total_baggages"], args["nonfree_baggages"]
            return json.dumps(r)
        if name == "get_user_details":
            return json.dumps({"user_id": args["user_id"], "name": "Mia Li"})
        if name == "send_certificate":
            n, user, amount = self.calls[name], args["user_id"], args["amount"]
            return f"Certificate {n} added to user {user} with amount {amount}."
        return json.dumps({"ok": name})

    def tools(self) -> list[StructuredTool]:
        """LangChain tools with the real schemas, answering from this backend."""
        out = []
        for schema in airline_schemas():
            fn = schema["function"]

            def run(_name: str = fn["name"], **kwargs: Any) -> str:
                return self.run(_name, kwargs)

            async def arun(_name: str = fn["name"], **kwargs: Any) -> str:
                return self.run(_name, kwargs)

            out.append(
                StructuredTool.from_function(
                    func=run,
                    coroutine=arun,
                    name=fn["name"],
                    description=fn["description"],
                    args_schema=fn["parameters"],
                )
            )
        return out


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """One scripted model turn calling ``name``."""
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


#: read, read again (served), write (invalidates), read (fresh), two side-effecting calls, answer.
SCRIPT: list[dict[str, Any]] = [
    call("get_reservation_details", reservation_id=RES),
    call("get_reservation_details", reservation_id=RES),
    call(
        "update_reservation_baggages",
        reservation_id=RES,
        total_baggages=2,
        nonfree_baggages=0,
        payment_id="credit_card_4421486",
    ),
    call("get_reservation_details", reservation_id=RES),
    call("send_certificate", user_id="mia_li_3668", amount=50),
    call("send_certificate", user_id="mia_li_3668", amount=50),
    {"text": "Your reservation now has 2 checked bags."},
]
