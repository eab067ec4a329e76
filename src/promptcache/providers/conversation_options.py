"""The provider opt-ins that follow a conversation from one request to the next.

Each needs what the previous request of the same conversation sent or was answered, so they keep
per-conversation state (bounded, keyed by tenant and conversation) that the rest of the pipeline
does not:

* **cache diagnostics** (``cache_diagnostics=True``): ask the provider for its verdict on each
  request's cache miss and read it back into ``plan.explain()`` and the figures.
  Anthropic: ``diagnostics.previous_message_id`` on every request of a conversation, since a
  request without it breaks the chain (platform.claude.com/docs/en/build-with-claude/cache-diagnostics,
  read 2026-12-07; :mod:`promptcache.providers.diagnostics`). OpenAI:
  ``prompt_cache_options.comparison_response_id`` naming the conversation's previous answer,
  Responses API on GPT-5.6 and later (developers.openai.com prompt-caching guide, read
  2026-12-07; :mod:`promptcache.providers.openai_diagnostics`).
* **mid-conversation changes** (``mid_conversation_tools`` / ``mid_conversation_system``): a
  conversation's tool additions and removals, and text appended to its system prompt, expressed
  as Anthropic mid-conversation changes on the models the catalog lists with that capability,
  instead of rewriting the start of the prompt (:mod:`promptcache.providers.mid_conversation`).

>>> opts = ConversationOptions(cache_diagnostics=False, tools=False, system=False, size=16, catalog=None)
>>> opts.active
False
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptcache.formats import WireFormat
from promptcache.plan import Hint, Plan
from promptcache.providers.diagnostics import Diagnosis, ResponseChains, diagnosable, with_diagnostics
from promptcache.providers.hints import model_info
from promptcache.providers.mid_conversation import Conversations, apply_changes
from promptcache.providers.openai_diagnostics import COMPARISON_FIELD, with_comparison
from promptcache.providers.openai_diagnostics import diagnosable as comparison_diagnosable

if TYPE_CHECKING:
    from promptcache.catalog import Catalog

__all__ = ["ConversationKey", "ConversationOptions"]

#: A conversation as these options know it: its tenant and the engine's conversation id.
ConversationKey = tuple[str, bytes]


class ConversationOptions:
    """A :class:`~promptcache.engine.PromptCache`'s per-conversation provider opt-ins and their state.

    ``size`` bounds each table of conversations (least recently used first out).
    """

    def __init__(
        self, *, cache_diagnostics: bool, tools: bool, system: bool, size: int, catalog: Catalog | None
    ) -> None:
        self.cache_diagnostics = cache_diagnostics
        self.tools = tools
        self.system = system
        self._catalog = catalog
        self._chains = ResponseChains(max(1, size))
        # OpenAI's apart: an app falling back from one provider to the other sends the same
        # conversation to both, and neither knows the other's response ids.
        self._comparisons = ResponseChains(max(1, size))
        self._conversations = Conversations(max(1, size))

    @property
    def active(self) -> bool:
        """Whether any of the opt-ins is on."""
        return self.cache_diagnostics or self.tools or self.system

    def apply(
        self,
        fmt: WireFormat,
        body: dict[str, Any],
        hints: list[Hint],
        notes: list[str],
        key: ConversationKey,
        model: str,
    ) -> tuple[dict[str, Any], list[Hint], list[str], ConversationKey | None]:
        """The hinted ``body`` of conversation ``key`` with the opt-ins applied, its hints and
        notes, and the chain its answer is recorded under (None: no diagnostics asked)."""
        if fmt is WireFormat.ANTHROPIC_MESSAGES and (self.tools or self.system):
            body, hints, notes = self._mid_conversation(body, hints, notes, key, model)
        chain: ConversationKey | None = None
        if self.cache_diagnostics and fmt is WireFormat.ANTHROPIC_MESSAGES:
            body, added, note = with_diagnostics(body, self._chains, key, model)
            if added:
                chain = key
                hints = [*hints, Hint(kind="diagnostics", where="$.diagnostics")]
            if note is not None:
                notes = [*notes, note]
        elif self.cache_diagnostics and fmt is WireFormat.OPENAI_RESPONSES:
            body, hints, notes, chain = self._comparison(body, hints, notes, key, model)
        return body, hints, notes, chain

    def record_answer(self, plan: Plan, response_id: str | None, diagnosis: Diagnosis | None) -> None:
        """Read a provider's answer back into its request's plan: the response id becomes what its
        conversation's next request names, and the provider's verdict on the miss joins
        ``plan.explain()``."""
        private = plan.__pydantic_private__ or {}
        chain = private.get("_chain")
        if chain is not None and response_id is not None:
            openai = plan.format is WireFormat.OPENAI_RESPONSES
            (self._comparisons if openai else self._chains).answered(chain, response_id)
        if diagnosis is not None:
            plan._provider = (diagnosis.reason, diagnosis.missed_tokens)

    def _mid_conversation(
        self, body: dict[str, Any], hints: list[Hint], notes: list[str], key: ConversationKey, model: str
    ) -> tuple[dict[str, Any], list[Hint], list[str]]:
        info = model_info(model, WireFormat.ANTHROPIC_MESSAGES, self._catalog)
        caps = info.capabilities if info is not None else frozenset()
        # Tool changes need their beta header, which only the httpx seam adds: Claude API ids only
        # (a Vertex id "claude-...@date" goes through the anthropic SDK's middleware instead).
        tools = self.tools and "mid_conversation_tools" in caps and diagnosable(model)
        system = self.system and "mid_conversation_system" in caps
        if not (tools or system):
            return body, hints, notes
        states = self._conversations
        with states.lock:
            out, state, more = apply_changes(body, states.get(key), tools=tools, system=system)
            if state is not None:
                states.put(key, state)
        if out is not body:
            kinds = {
                blk.get("type") for m in out["messages"] if m.get("role") == "system" for blk in m["content"]
            }
            if kinds & {"tool_addition", "tool_removal"}:
                hints = [*hints, Hint(kind="tool_change", where="$.messages")]
            if "text" in kinds:
                hints = [*hints, Hint(kind="system_message", where="$.messages")]
        return out, hints, [*notes, *more] if more else notes

    def _comparison(
        self, body: dict[str, Any], hints: list[Hint], notes: list[str], key: ConversationKey, model: str
    ) -> tuple[dict[str, Any], list[Hint], list[str], ConversationKey | None]:
        if not comparison_diagnosable(model, WireFormat.OPENAI_RESPONSES, self._catalog):
            why = f"{model}: OpenAI answers cache diagnostics on GPT-5.6 and later only"
            return body, hints, [*notes, why], None
        # Unlike Anthropic's, OpenAI's comparison may name any earlier response, so a request
        # without one breaks nothing: the first turn sends none. A request continuing a stored
        # response (previous_response_id) compares with that one, its own preceding turn.
        stored = body.get("previous_response_id")
        previous = stored if isinstance(stored, str) and stored else self._comparisons.previous(key)
        out, note = with_comparison(body, previous)
        if previous and note is None:
            hints = [*hints, Hint(kind="diagnostics", where=f"$.prompt_cache_options.{COMPARISON_FIELD}")]
        return out, hints, [*notes, note] if note is not None else notes, key
