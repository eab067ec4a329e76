"""The request pipeline, one concept per module, in the order a request runs through it.

* :mod:`~promptcache.pipeline.analyse`: canonical form, scans and digest of one block,
  through one bounded content-keyed memo;
* :mod:`~promptcache.pipeline.learning`: per-family state (what changes) and the
  decisions drawn from it;
* :mod:`~promptcache.pipeline.assemble`: the wire layout, the volatile block, the plan
  and its keys.

Splitting and joining a body is :mod:`promptcache.wire`'s; placing provider hints from
the plan is :mod:`promptcache.providers.hints`'; :class:`promptcache.engine.PromptCache`
runs them in order.
"""
