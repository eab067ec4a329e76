"""The lab: offline tooling around the runtime, never imported by it.

Everything here measures, replays or demonstrates promptcache without a provider account; none of
it is on a request's path, and ``import promptcache`` (or any integration package) loads none of it.

===================  ============================================================================
``simulate``         provider prompt-cache rules, simulated (prefix matching, TTLs, minimums)
``emulate``          a local Anthropic/OpenAI/Gemini-compatible server over the simulator
                     (``promptcache emulate``)
``convert``          one request body as an app on another provider would send it
``traces``           scenario traces built from the bundled tau-bench trajectories
``corpus``           multi-turn traces rendered the way real open-source agents build requests
``bench``            hit-rate arms over traces (``promptcache bench``)
``bench_agents``     every arm over the agents corpus (``promptcache bench agents``)
``audit``            what in a request log breaks caching, and what fixing it saves
                     (``promptcache audit``)
``replay``           a request log run through promptcache, compared body by body
                     (``promptcache replay``)
``report``           the HTML/JSON report with charts (matplotlib, loaded only when drawing)
                     (``promptcache report``)
``demo``             the offline demo (``promptcache demo --core``)
``bundled``          paths of the real fixtures in ``lab/data/real/`` (see its ``SOURCES.md``)
===================  ============================================================================

The CLI (:mod:`promptcache.cli`) lists these commands by name next to the runtime's own (``stats``,
``invalidate``); a command's module is imported only when that command runs.
"""
