"""promptcache on a plain provider SDK call: rewrite the request, send it, record what the provider did."""

import anthropic

from promptcache import PromptCache, usage_from_response
from promptcache.lab.bundled import AGENTS

# A real agent's system prompt (tau-bench's airline policy, bundled with promptcache): long
# enough for the provider to cache, like most production system prompts.
POLICY = (AGENTS / "tau_bench_airline_system_prompt.md").read_text()

cache = PromptCache()  # embedded defaults; store="redis://..." for a fleet
client = anthropic.Anthropic()  # reads ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL, if set)

for question in ("Can I change my flight?", "How many free bags does a gold member get?"):
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": POLICY,
        "messages": [{"role": "user", "content": question}],
    }
    prepared = cache.prepare_request(body, format="anthropic-messages", tenant="acme")
    response = client.messages.create(**prepared.body)  # same wire format, cache hints placed
    usage = usage_from_response("anthropic-messages", response.to_dict())
    cache.record_usage(usage, tenant="acme")  # the call's figures go to cache.stats()
    print(f"cache read {usage.cache_read_tokens}, written {usage.cache_write_tokens} of {usage.input_tokens}")
    print(prepared.plan.explain())  # why the prefix differs from the last call, if it does

print(cache.stats().for_tenant("acme"))  # calls, tokens, cost and cost avoided for the tenant
