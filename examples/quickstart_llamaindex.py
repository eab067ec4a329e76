"""promptcache in LlamaIndex: one line on Settings, then any agent or query uses it."""

import asyncio

import promptcache_llamaindex
from llama_index.core import Settings
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.tools import FunctionTool
from llama_index.llms.anthropic import Anthropic

from promptcache import PromptCache
from promptcache.lab.bundled import AGENTS

# A real agent's system prompt (tau-bench's airline policy, bundled with promptcache): long
# enough for the provider to cache, like most production system prompts.
policy = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()


def get_reservation_details(reservation_id: str) -> str:
    """Get the details of a reservation."""
    return f'{{"reservation_id": "{reservation_id}", "origin": "SFO", "destination": "JFK"}}'


cache = PromptCache()
Settings.llm = Anthropic(model="claude-sonnet-4-5")  # reads ANTHROPIC_API_KEY
handler = promptcache_llamaindex.enable(cache)  # one line; disable() undoes it

agent = FunctionAgent(tools=[FunctionTool.from_defaults(get_reservation_details)], system_prompt=policy)


async def main() -> None:
    with instrument_tags({"tenant_id": "acme"}):  # the tenant of every call inside
        for question in ("Can I change my flight?", "How many free bags does a gold member get?"):
            print(await agent.run(question))
            print(handler.cache_metrics.summary())


asyncio.run(main())
print(cache.stats().for_tenant("acme"))
