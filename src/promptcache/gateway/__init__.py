"""Gateway mode: the same rewriting for any client, through a ``base_url`` (``promptcache proxy``).

An HTTP proxy for OpenAI Chat Completions (``/v1/chat/completions``), OpenAI Responses
(``/v1/responses``) and Anthropic Messages (``/v1/messages``). Each request is rewritten by the
same core as in-process use (:class:`promptcache.transport.AsyncPromptCacheTransport` around
``PromptCache.prepare_request``: layout, relocation, hints, policy, the hint-rejection resend)
for the caller's tenant, then forwarded; answers stream back chunk by chunk.

The modules, one concept each:

* :mod:`promptcache.gateway.config` — the settings, checked at start;
* :mod:`promptcache.gateway.tenant` — which tenant a request runs for (header, else a keyed
  hash of the API key);
* :mod:`promptcache.gateway.metrics` — the Prometheus figures of ``/metrics``;
* :mod:`promptcache.gateway.app` — the ASGI app (plain ASGI, Starlette's responses) that
  forwards through httpx;
* :mod:`promptcache.gateway.collector` — the garbage collector of the gateway's own process;
* :mod:`promptcache.gateway.cli` — ``promptcache proxy``, served by uvicorn.

Its server dependencies are the ``gateway`` extra (``pip install '.[gateway]'``); nothing here
is imported by ``import promptcache``.
"""
