"""promptcache in a LangChain agent (middleware) and around any chat model (wrapper)."""

from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from promptcache_langchain import CachingChatModel, PromptCacheMiddleware, declare_tool

from promptcache import PromptCache
from promptcache.lab.bundled import AGENTS

# A real agent's system prompt (tau-bench's airline policy, bundled with promptcache): long
# enough for the provider to cache, like most production system prompts.
policy = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()


# Tools declare their side effects: only pure and read_only results are served from
# promptcache's tool cache, and a write invalidates the tags it names.
@declare_tool(side_effect="read_only", tags=["reservation:{reservation_id}"])
def get_reservation_details(reservation_id: str) -> str:
    """Get the details of a reservation."""
    return f'{{"reservation_id": "{reservation_id}", "total_baggages": 1}}'


@declare_tool(side_effect="idempotent_write", invalidates=["reservation:{reservation_id}"])
def update_reservation_baggages(reservation_id: str, total_baggages: int) -> str:
    """Set the number of checked bags of a reservation."""
    return f'{{"reservation_id": "{reservation_id}", "total_baggages": {total_baggages}}}'


tools = [get_reservation_details, update_reservation_baggages]
cache = PromptCache({"require_tenant": True})
cfg = {"configurable": {"tenant_id": "acme"}}  # the tenant comes per call, never from a global

# Agents: add the middleware, anywhere in the list. ChatAnthropic reads ANTHROPIC_API_KEY.
agent = create_agent(
    ChatAnthropic(model="claude-sonnet-4-5"),
    tools,
    system_prompt=policy,
    middleware=[PromptCacheMiddleware(cache)],
)
for question in ("I want to change my flight", "How many bags are on reservation ZFA04Y?"):
    state = agent.invoke({"messages": [("user", question)]}, cfg)
    print(state["cache_metrics"].summary())  # calls, hit rate, cost, cost avoided

# Any chain: wrap the chat model
model = CachingChatModel(ChatAnthropic(model="claude-sonnet-4-5"), cache)
reply = model.invoke([("system", policy), ("user", "Hi")], config=cfg)
meta = reply.response_metadata["promptcache"]  # hints placed, cache reads and writes, cost
print(meta["cache_read_tokens"], meta["explain"])  # why the prefix missed, if it did
print(cache.stats().for_tenant("acme"))  # every call, per tenant and model
