"""Lay a wire request's analysed parts out (:class:`WireLayout`, then its ``Plan``) and key it.

The wire layout is DESIGN.md step 1 for a request a framework already ordered:

    static    system/developer texts (the caller's order), then tools (by name unless pinned)
    history   the conversation before the current turn, never reordered
    volatile  the values moved out of the static prefix, labelled (one block, if any)
    current   the current turn

Keys follow DESIGN.md "Key contract": the SHA-256 of the tenant's contract and the
chained digests of the prefix (``prompt_prefix``) and of the prefix plus history
(``conversation``); nothing that only exists for transport enters them.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptcache.blocks import Block, BlockKind, Stability
from promptcache.canonical import Fragment, digest
from promptcache.explain import Snapshot
from promptcache.formats import WireFormat
from promptcache.keys import ROUTING_HEAD_CHARS, KeyContract, chain_hash, derive_key, prefix_key, routing_key
from promptcache.layout import section_of
from promptcache.pipeline.analyse import History, Message, TextAnalysis, Tools
from promptcache.pipeline.learning import Learned, sent_digest
from promptcache.plan import Hint, Plan

VOLATILE_HEADER = (
    "<volatile_context>\n"
    "These values were moved here from earlier in the prompt so that its stable part "
    "can be cached; read each one as part of the section it names.\n"
)
VOLATILE_FOOTER = "</volatile_context>"


def volatile_text(frags: list[Fragment]) -> str:
    """The volatile block: each moved value labelled with the section and line it came from,
    so the model reads it where it belongs (DESIGN.md step 2)."""
    # One f-string per value (a large text moves tens of thousands of them).
    lines = [
        (
            f"[{f.source}, line {f.line}] {f.marker} = {f.text}"
            if f.marker
            else f"[{f.source}, line {f.line}] {f.text}"
        )
        if f.path is None
        else (
            f"[{f.source} {f.path}] {f.marker} = {f.text}" if f.marker else f"[{f.source} {f.path}] {f.text}"
        )
        for f in frags
    ]
    return VOLATILE_HEADER + "\n".join(lines) + "\n" + VOLATILE_FOOTER


def volatile_block(text: str) -> tuple[Block, str]:
    """The volatile block and its digest."""
    block = Block(kind=BlockKind.CONTEXT, content=text, stability=Stability.VOLATILE, name="relocated")
    return block, digest(b"volatile", text.encode())


@dataclass(slots=True, frozen=True)
class Prefix:
    """The static prefix as sent: system texts then tools."""

    blocks: list[Block]
    digests: list[str]
    data_classes: dict[int, list[str]]
    chars: int  # characters of the system texts and tools (the hint placement's estimate)
    n_system: int  # system texts sent (a text moved whole is not)
    head: str  # the start of the first system text sent (what the routing key reads)
    sections: list[str]  # each block's layout section (the tools' come with their analysis)


def prefix_of(texts: list[TextAnalysis], learned: Learned, tools: Tools) -> Prefix:
    """The prefix of ``texts`` and ``tools`` as the family's learning decided them."""
    blocks: list[Block] = []
    digests: list[str] = []
    classes: dict[int, list[str]] = {}
    for t, sent in zip(texts, learned.system_out, strict=True):
        if not sent:
            continue
        if sent == t.stable:
            blocks.append(t.block)
        elif sent == t.canonical:  # the analysis made both blocks once, not one per call
            blocks.append(t.canonical_block)
        else:
            blocks.append(Block(kind=t.block.kind, content=sent, data_classes=t.data_classes))
        digests.append(sent_digest(t, sent))
        if t.data_classes:
            classes[len(blocks) - 1] = list(t.data_classes)
    base = len(blocks)
    classes.update({base + i: list(c) for i, c in enumerate(tools.shared.data_classes) if c})
    return Prefix(
        blocks=[*blocks, *tools.shared.blocks],
        digests=[*digests, *tools.shared.digests],
        data_classes=classes,
        chars=sum(len(s) for s in learned.system_out) + tools.shared.chars,
        n_system=base,
        head=next((s for s in learned.system_out if s), "")[:ROUTING_HEAD_CHARS],
        sections=[section_of(b, is_current=False) for b in blocks] + tools.shared.sections,
    )


@dataclass(slots=True, frozen=True)
class WireLayout:
    """A wire request laid out: blocks and digests in sent order, their sections, the static
    prefix's length, the two keys, and data classes at their block indices. Plain data: the
    hint placement reads it, and the engine makes it the request's :class:`Plan`."""

    blocks: list[Block]
    digests: list[str]
    sections: list[str]
    prefix_end: int
    prefix_key: str
    conversation_key: str
    routing_key: str
    data_classes: dict[int, list[str]]

    def plan(
        self,
        *,
        format: WireFormat,
        model: str,
        tenant: str,
        family: str,
        fragments: list[Fragment],
        hints: list[Hint],
        decisions: list[str],
        mode: str,
        engine: tuple[KeyContract, Snapshot, Snapshot | None, tuple[str, bytes] | None],
    ) -> Plan:
        """The :class:`Plan` of this layout, with the request's other fields; ``engine``: its
        private state (key contract, snapshot, the snapshot it is explained against, the
        diagnostics chain).

        Built with ``model_construct``: every field comes from the engine's own typed values
        (checked by mypy), so pydantic's validation would only walk the block lists again on
        every call. A :class:`Plan` built by anyone else is validated as usual. The private state
        goes in with the fields (pydantic sets it on the new plan), not by four assignments after.
        """
        contract, snapshot, previous, chain = engine
        return Plan.model_construct(
            blocks=self.blocks,
            digests=self.digests,
            sections=self.sections,
            prefix_end=self.prefix_end,
            prefix_key=self.prefix_key,
            conversation_key=self.conversation_key,
            routing_key=self.routing_key,
            data_classes=self.data_classes,
            format=format,
            model=model,
            tenant=tenant,
            family=family,
            fragments=fragments,
            hints=hints,
            decisions=decisions,
            mode=mode,
            # Every field given: model_construct would otherwise call each missing field's
            # default factory through inspect.signature, on every call.
            moves=[],
            _contract=contract,
            _snapshot=snapshot,
            _previous=previous,
            _chain=chain,
        )


def wire_layout(
    *,
    contract: KeyContract,
    prefix: Prefix,
    history: History,
    current: list[Message],
    volatile: str | None,
    tool_names: list[str],
) -> WireLayout:
    """Lay a wire request out and key it: the prefix, the history, the volatile block (if
    any), then the current turn (:func:`promptcache.layout.wire_sections`)."""
    blocks = prefix.blocks + history.blocks
    digests = prefix.digests + history.digests
    classes = dict(prefix.data_classes)
    base = len(prefix.blocks)
    classes.update({base + i: c for i, c in history.data_classes.items()})
    conversation_key = derive_key(contract, "conversation", chain_hash(digests))
    if volatile is not None:
        block, dg = volatile_block(volatile)
        blocks.append(block)
        digests.append(dg)
    current_from = len(blocks)
    for m in current:
        blocks.append(m.block)
        digests.append(m.digest)
        if m.data_classes:
            classes[len(blocks) - 1] = list(m.data_classes)
    # promptcache.layout.wire_sections(blocks, current_from), with the history's sections
    # taken from its analysis (made once per message, not once per block per request).
    sections = prefix.sections + history.sections
    sections += [section_of(b, is_current=False) for b in blocks[len(sections) : current_from]]
    sections += ["current"] * (len(blocks) - current_from)
    return WireLayout(
        blocks=blocks,
        digests=digests,
        sections=sections,
        prefix_end=len(prefix.blocks),
        prefix_key=prefix_key(contract, prefix.digests),
        conversation_key=conversation_key,
        routing_key=routing_key(contract, tool_names, prefix.head),
        data_classes=classes,
    )
