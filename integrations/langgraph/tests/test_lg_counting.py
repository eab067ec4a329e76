"""Every billed model call is counted exactly once in a graph (issue 20, item 3).

Each test compares the records in ``cache_metrics`` and ``cache.stats()`` with the HTTP requests
the provider emulator actually served: a ``create_agent`` agent with ``PromptCacheMiddleware``
run inside a ``cache_node`` node, an ``interrupt()`` after a billed call, and a run served from
LangGraph's node cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired

import lc_tests_path  # noqa: F401  (puts the LangChain tests' helpers on sys.path: first)

# isort: split
import fixtures_lc as shared
import pytest
from helpers_lc import make_model
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware, ModelRequest, ModelResponse, wrap_model_call
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import CachePolicy, Command, RetryPolicy, interrupt
from promptcache_langchain import CachingChatModel, PromptCacheMiddleware
from promptcache_langgraph import CacheMetrics, CacheMetricsState, cache_node, node_cache
from typing_extensions import TypedDict

from promptcache import PromptCache
from promptcache.figures import Degradation
from promptcache.llm_bridge import HINT_REJECTIONS
from promptcache.stats import recorder_for

Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator

airline_policy = shared.airline_policy
CONFIG: Any = {"configurable": {"tenant_id": "acme"}}


class State(MessagesState, CacheMetricsState):
    pass


@tool
def get_reservation_details(reservation_id: str) -> str:
    """Get the details of a reservation."""
    return f'{{"reservation_id": "{reservation_id}", "total_baggages": 1}}'


# Two model calls per agent run: a tool call, then the answer.
AGENT_SCRIPT = [
    {"tool_calls": [{"name": "get_reservation_details", "arguments": {"reservation_id": "ZFA04Y"}}]},
    {"text": "Reservation ZFA04Y has one checked bag."},
]


@pytest.mark.parametrize("hand_back", [False, True], ids=["messages", "messages+metrics"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_agent_with_middleware_inside_cache_node(
    airline_policy: str, use_async: bool, hand_back: bool
) -> None:
    cache = PromptCache()
    with Emulator(script=AGENT_SCRIPT) as emu:
        agent: Any = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            [get_reservation_details],
            system_prompt=airline_policy,
            middleware=[PromptCacheMiddleware(cache)],
        )

        def pick(out: dict[str, Any]) -> dict[str, Any]:
            update: dict[str, Any] = {"messages": out["messages"]}
            if hand_back:  # the agent's own channel handed to the graph's, as a user may
                update["cache_metrics"] = out["cache_metrics"]
            return update

        def node(state: State) -> dict[str, Any]:
            return pick(agent.invoke({"messages": state["messages"]}))

        async def anode(state: State) -> dict[str, Any]:
            return pick(await agent.ainvoke({"messages": state["messages"]}))

        g = StateGraph(State)
        g.add_node("support", cache_node(anode if use_async else node, cache))
        g.add_edge(START, "support")
        graph = g.compile()
        question = {"messages": [HumanMessage("How many bags are on reservation ZFA04Y?")]}
        out = await graph.ainvoke(question, CONFIG) if use_async else graph.invoke(question, CONFIG)

        billed = len(emu.requests)
        assert billed == 2
        m: CacheMetrics = out["cache_metrics"]
        assert m.calls == billed and len(m.records) == billed
        assert m.input_tokens == sum(u.input_tokens for u in emu.usages)
        # The ids are the middleware's own: the ones response_metadata["promptcache"] names.
        answers = [msg for msg in out["messages"] if msg.type == "ai"]
        assert set(m.records) == {a.response_metadata["promptcache"]["call_id"] for a in answers}
        assert recorder_for(cache).snapshot().for_tenant("acme").calls == billed


class Question(CacheMetricsState):
    question: str
    answer: NotRequired[str]


class Asked(TypedDict):
    """What the answer node reads (all its node-cache key covers): the question only."""

    question: str


def _answer_graph(
    model: Any, pc: PromptCache, policy: str, use_async: bool = False, **compile_kwargs: Any
) -> Any:
    def answer(state: Asked) -> dict[str, Any]:
        msg = model.invoke([SystemMessage(policy), HumanMessage(state["question"])])
        return {"answer": str(msg.content)}

    async def aanswer(state: Asked) -> dict[str, Any]:
        msg = await model.ainvoke([SystemMessage(policy), HumanMessage(state["question"])])
        return {"answer": str(msg.content)}

    g = StateGraph(Question)
    fn: Any = aanswer if use_async else answer
    g.add_node("answer", cache_node(fn, pc), input_schema=Asked, cache_policy=CachePolicy())
    g.add_edge(START, "answer")
    return g.compile(**compile_kwargs)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_node_cache_replay_reports_a_local_hit(airline_policy: str, use_async: bool) -> None:
    cache = PromptCache()
    with Emulator() as emu:
        model = CachingChatModel(make_model("openai", emu.openai_base_url, "k"), cache)
        graph = _answer_graph(model, cache, airline_policy, use_async, cache=node_cache(InMemoryCache()))
        q = {"question": "What is the baggage allowance?"}

        async def run(config: Any) -> Any:
            return await graph.ainvoke(q, config) if use_async else graph.invoke(q, config)

        first = (await run(CONFIG))["cache_metrics"]
        replay = await run(CONFIG)
        assert len(emu.requests) == 1  # the second run was served from LangGraph's node cache
        assert replay["answer"]
        m: CacheMetrics = replay["cache_metrics"]
        assert (first.calls, first.local_hits) == (1, 0) and first.cost_usd > 0
        assert (m.calls, m.local_hits, m.input_tokens, m.cost_usd) == (0, 1, 0, 0.0)
        assert m.cost_avoided_usd == pytest.approx(first.cost_usd + first.cost_avoided_usd)
        (hit,) = m.records.values()
        assert hit.local_hit and hit.kind == "model" and hit.tenant == "acme"
        assert recorder_for(cache).snapshot().for_tenant("acme").calls == len(emu.requests)


def test_node_cache_replay_in_a_checkpointed_thread(airline_policy: str) -> None:
    cache = PromptCache()
    with Emulator() as emu:
        model = CachingChatModel(make_model("openai", emu.openai_base_url, "k"), cache)
        graph = _answer_graph(
            model, cache, airline_policy, cache=node_cache(InMemoryCache()), checkpointer=InMemorySaver()
        )
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}
        q = {"question": "What is the baggage allowance?"}
        graph.invoke(q, config)
        graph.invoke(q, config)  # the same thread asks again: served from the node cache
        other = graph.invoke(q, {"configurable": {"tenant_id": "acme", "thread_id": "t2"}})
        assert len(emu.requests) == 1
        thread: CacheMetrics = CacheMetrics.model_validate(graph.get_state(config).values["cache_metrics"])
        # The thread's figures: the one billed call, then one local hit; nothing counted twice.
        assert (thread.calls, thread.local_hits) == (1, 1)
        assert (other["cache_metrics"].calls, other["cache_metrics"].local_hits) == (0, 1)


def _approval_graph(model: Any, pc: PromptCache, policy: str, *, questions: int, subgraph: bool) -> Any:
    """A model node that asks a human after each billed call: ``interrupt()`` after the call."""

    def decide(state: State) -> dict[str, Any]:
        out = []
        for i in range(questions):
            out.append(model.invoke([SystemMessage(policy), *state["messages"], HumanMessage(f"step {i}")]))
            interrupt(f"approve step {i}?")  # the call before it is billed either way
        return {"messages": out}

    async def adecide(state: State) -> dict[str, Any]:
        out = []
        for i in range(questions):
            msgs = [SystemMessage(policy), *state["messages"], HumanMessage(f"step {i}")]
            out.append(await model.ainvoke(msgs))
            interrupt(f"approve step {i}?")
        return {"messages": out}

    def build(fn: Any) -> Any:
        g = StateGraph(State)
        g.add_node("decide", cache_node(fn, pc))
        g.add_edge(START, "decide")
        return g

    def graph(use_async: bool) -> Any:
        inner = build(adecide if use_async else decide)
        if not subgraph:
            return inner.compile(checkpointer=InMemorySaver())
        outer = StateGraph(State)
        outer.add_node("approval", inner.compile())  # the subgraph shares the parent's checkpointer
        outer.add_edge(START, "approval")
        return outer.compile(checkpointer=InMemorySaver())

    return graph


@pytest.mark.parametrize("subgraph", [False, True], ids=["node", "subgraph"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_calls_billed_before_interrupt_are_counted_once(
    airline_policy: str, use_async: bool, subgraph: bool
) -> None:
    cache = PromptCache()
    with Emulator() as emu:
        model = CachingChatModel(make_model("openai", emu.openai_base_url, "k"), cache)
        graph = _approval_graph(model, cache, airline_policy, questions=2, subgraph=subgraph)(use_async)
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}

        async def run(value: Any) -> Any:
            return await graph.ainvoke(value, config) if use_async else graph.invoke(value, config)

        first = await run({"messages": [HumanMessage("Change my flight, please.")]})
        assert "__interrupt__" in first and len(emu.requests) == 1
        second = await run(Command(resume="yes"))  # runs the node again: 2 more calls, 2nd interrupt
        assert "__interrupt__" in second and len(emu.requests) == 3
        done = await run(Command(resume="yes"))  # again from the start: 2 more calls, finished
        assert "__interrupt__" not in done

        billed = len(emu.requests)
        assert billed == 5
        m = CacheMetrics.model_validate(done["cache_metrics"])
        assert m.calls == len(m.records) == billed
        assert m.input_tokens == sum(u.input_tokens for u in emu.usages)
        assert recorder_for(cache).snapshot().for_tenant("acme").calls == billed


def test_a_resume_in_another_process_finds_the_billed_call(airline_policy: str, tmp_path: Any) -> None:
    # Two PromptCache objects over one store, two graphs over one checkpointer: the worker that
    # resumes is not the one that was interrupted (nothing shared in memory but the checkpointer).
    saver = InMemorySaver()
    with Emulator() as emu:
        graphs = []
        for _ in range(2):
            pc = PromptCache(store=tmp_path / "pc")
            model = CachingChatModel(make_model("openai", emu.openai_base_url, "k"), pc)

            def decide(state: State, model: Any = model) -> dict[str, Any]:
                answer = model.invoke([SystemMessage(airline_policy), *state["messages"]])
                interrupt("approve?")
                return {"messages": [answer]}

            g = StateGraph(State)
            g.add_node("decide", cache_node(decide, pc))
            g.add_edge(START, "decide")
            graphs.append(g.compile(checkpointer=saver))
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}
        graphs[0].invoke({"messages": [HumanMessage("Change my flight, please.")]}, config)
        done = graphs[1].invoke(Command(resume="yes"), config)
        assert len(emu.requests) == 2
        assert CacheMetrics.model_validate(done["cache_metrics"]).calls == 2


def test_calls_of_a_retried_attempt_are_counted(airline_policy: str) -> None:
    # The same rule for an error: LangGraph's RetryPolicy runs the task again, keeping nothing.
    cache = PromptCache()
    with Emulator() as emu:
        model = CachingChatModel(make_model("openai", emu.openai_base_url, "k"), cache)
        attempts: list[int] = []

        def flaky(state: State) -> dict[str, Any]:
            answer = model.invoke([SystemMessage(airline_policy), *state["messages"]])
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("the booking system did not answer")
            return {"messages": [answer]}

        g = StateGraph(State)
        g.add_node(
            "flaky", cache_node(flaky, cache), retry_policy=RetryPolicy(max_attempts=2, initial_interval=0)
        )
        g.add_edge(START, "flaky")
        graph = g.compile(checkpointer=InMemorySaver())
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}
        out = graph.invoke({"messages": [HumanMessage("Change my flight, please.")]}, config)
        assert len(attempts) == len(emu.requests) == 2
        assert CacheMetrics.model_validate(out["cache_metrics"]).calls == 2


def test_an_unusable_store_never_fails_the_interrupted_run(airline_policy: str, tmp_path: Any) -> None:
    # A cache fault degrades: the shared tier is skipped (and counted), the run goes on, and the
    # process's own memory tier still holds the interrupted attempt's figures for the resume.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    cache = PromptCache(store=blocker / "pc")
    before = HINT_REJECTIONS[Degradation.TIER_SKIPPED.value]
    with Emulator() as emu:
        model = CachingChatModel(make_model("openai", emu.openai_base_url, "k"), cache)
        graph = _approval_graph(model, cache, airline_policy, questions=1, subgraph=False)(False)
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}
        graph.invoke({"messages": [HumanMessage("Change my flight, please.")]}, config)
        done = graph.invoke(Command(resume="yes"), config)
        assert len(emu.requests) == 2 and done["messages"][-1].type == "ai"
        assert CacheMetrics.model_validate(done["cache_metrics"]).calls == 2
    assert cache.store.stats().tiers["l2"].tier_skipped >= 1
    assert HINT_REJECTIONS[Degradation.TIER_SKIPPED.value] >= before


def test_agent_tool_approval_interrupt_counts_each_call_once(airline_policy: str) -> None:
    # create_agent's own interrupt (LangChain's HumanInTheLoopMiddleware, after the model call):
    # the model node finished before the interrupt, so its record is in the checkpoint already.
    cache = PromptCache()
    with Emulator(script=AGENT_SCRIPT) as emu:
        agent: Any = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            [get_reservation_details],
            system_prompt=airline_policy,
            checkpointer=InMemorySaver(),
            middleware=[
                HumanInTheLoopMiddleware(interrupt_on={"get_reservation_details": True}),
                PromptCacheMiddleware(cache),
            ],
        )
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}
        first = agent.invoke({"messages": [HumanMessage("How many bags are on ZFA04Y?")]}, config)
        assert "__interrupt__" in first and len(emu.requests) == 1
        done = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
        billed = len(emu.requests)
        assert billed == 2
        assert CacheMetrics.model_validate(done["cache_metrics"]).calls == billed
        assert recorder_for(cache).snapshot().for_tenant("acme").calls == billed


@pytest.mark.parametrize("hand_back", [False, True], ids=["messages", "messages+metrics"])
def test_agent_inside_cache_node_interrupted_and_resumed(airline_policy: str, hand_back: bool) -> None:
    # Items b and c together: the agent's approval interrupt stops the outer node after a billed
    # call; the outer node runs again on resume, the agent resumes inside it.
    cache = PromptCache()
    with Emulator(script=AGENT_SCRIPT) as emu:
        agent: Any = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            [get_reservation_details],
            system_prompt=airline_policy,
            middleware=[
                HumanInTheLoopMiddleware(interrupt_on={"get_reservation_details": True}),
                PromptCacheMiddleware(cache),
            ],
        )

        def support(state: State) -> dict[str, Any]:
            out = agent.invoke({"messages": state["messages"]})
            update: dict[str, Any] = {"messages": out["messages"]}
            if hand_back:
                update["cache_metrics"] = out["cache_metrics"]
            return update

        g = StateGraph(State)
        g.add_node("support", cache_node(support, cache))
        g.add_edge(START, "support")
        graph = g.compile(checkpointer=InMemorySaver())
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}
        first = graph.invoke({"messages": [HumanMessage("How many bags are on ZFA04Y?")]}, config)
        assert "__interrupt__" in first and len(emu.requests) == 1
        done = graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
        billed = len(emu.requests)
        assert billed == 2
        m = CacheMetrics.model_validate(done["cache_metrics"])
        assert m.calls == len(m.records) == billed
        assert recorder_for(cache).snapshot().for_tenant("acme").calls == billed


def test_node_cache_serves_a_foreign_value_as_stored() -> None:
    # A graph whose "cache_metrics" channel holds something else: served as stored, never raised.
    cache = node_cache(InMemoryCache())
    key = (("answer",), "k1")
    cache.set({key: ([("cache_metrics", {"unrelated": 1}), ("answer", "42")], None)})
    assert [tuple(w) for w in cache.get([key])[key]] == [
        ("cache_metrics", {"unrelated": 1}),
        ("answer", "42"),
    ]


def test_agent_interrupting_inside_its_model_call_counts_through_cache_node(airline_policy: str) -> None:
    # A middleware of the app's own interrupts inside wrap_model_call, after the billed call: the
    # agent's model node is dropped and runs again on resume. Inside cache_node, both calls count.
    @wrap_model_call
    def review(request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> Any:
        response = handler(request)
        interrupt("review the answer")
        return response

    cache = PromptCache()
    with Emulator(script=[{"text": "First draft."}, {"text": "Second draft."}]) as emu:
        agent: Any = create_agent(
            make_model("openai", emu.openai_base_url, "k"),
            [],
            system_prompt=airline_policy,
            middleware=[review, PromptCacheMiddleware(cache)],
        )

        def support(state: State) -> dict[str, Any]:
            return {"messages": agent.invoke({"messages": state["messages"]})["messages"]}

        g = StateGraph(State)
        g.add_node("support", cache_node(support, cache))
        g.add_edge(START, "support")
        graph = g.compile(checkpointer=InMemorySaver())
        config: Any = {"configurable": {"tenant_id": "acme", "thread_id": "t1"}}
        first = graph.invoke({"messages": [HumanMessage("Change my flight, please.")]}, config)
        assert "__interrupt__" in first and len(emu.requests) == 1
        done = graph.invoke(Command(resume="ok"), config)
        billed = len(emu.requests)
        assert billed == 2
        assert CacheMetrics.model_validate(done["cache_metrics"]).calls == billed
