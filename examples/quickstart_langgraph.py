"""promptcache in a LangGraph graph: cache figures in the state, a tenant-safe node cache."""

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from promptcache_langchain import CachingChatModel
from promptcache_langgraph import CacheMetricsState, cache_node, node_cache, tenant_cache_key

from promptcache import PromptCache
from promptcache.lab.bundled import AGENTS

# A real agent's system prompt (tau-bench's airline policy, bundled with promptcache): long
# enough for the provider to cache, like most production system prompts.
policy = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()


class State(CacheMetricsState):  # adds the merge-safe cache_metrics channel
    question: str
    answer: str


cache = PromptCache()
llm = CachingChatModel(ChatOpenAI(model="gpt-4o"), cache)  # ChatOpenAI reads OPENAI_API_KEY


def answer(state: State) -> dict:
    reply = llm.invoke([SystemMessage(policy), HumanMessage(state["question"])])
    return {"answer": reply.content}


g = StateGraph(State)
# The node cache answers a repeated question without a model call. LangGraph's default
# node-cache key ignores the tenant: tenant_cache_key() adds it, so tenants never share an answer.
g.add_node("answer", cache_node(answer, cache), cache_policy=CachePolicy(key_func=tenant_cache_key()))
g.add_edge(START, "answer")
g.add_edge("answer", END)
# LangGraph's InMemoryCache, with a replayed run counted as a local hit (no provider call, no
# cost); without a cache here, a CachePolicy does nothing.
graph = g.compile(cache=node_cache())

runs = [
    ("acme", "Can I change my flight?"),
    ("acme", "How many free bags does a gold member get?"),  # provider prefix cache: policy read
    ("acme", "Can I change my flight?"),  # node cache: no model call
    ("globex", "Can I change my flight?"),  # another tenant: its own entry, a model call
]
for tenant, question in runs:
    # The tenant comes per run, in the config: the node-cache key and the figures read it there.
    cfg = {"configurable": {"tenant_id": tenant}}
    calls_before = cache.stats().total.calls
    state = graph.invoke({"question": question}, cfg)
    if cache.stats().total.calls == calls_before:
        print(f"{tenant}: {question!r} answered from the node cache, no model call")
    else:
        m = state["cache_metrics"]  # this run's model calls: tokens, cache reads, cost
        print(f"{tenant}: {question!r} model call, cache read {m.cache_read_tokens} of {m.input_tokens}")

print(cache.stats().total)  # 3 model calls: the node-cache hit made none
