"""Labelled blocks: the unit promptcache lays out, canonicalizes and keys.

A request to a model is a sequence of blocks. Each block says what it is
(``kind``), whether its text may act as instructions (``trust``), how often
it changes (``stability``), and who may share it (``scope``).

Retrieved documents and tool output are *untrusted*: they are data, never
instructions, and no layout decision may promote them into a trusted block.

>>> b = Block(kind="system", content="You are a helpful airline agent.")
>>> b.trust, b.stability
(<Trust.TRUSTED: 'trusted'>, <Stability.STATIC: 'static'>)
>>> Block(kind="retrieval", content="doc").trust
<Trust.UNTRUSTED: 'untrusted'>
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BlockKind(StrEnum):
    """What a block is; decides its default trust, stability and layout section."""

    SYSTEM = "system"
    DEVELOPER = "developer"
    TOOL_SCHEMA = "tool_schema"
    EXAMPLE = "example"
    CONTEXT = "context"
    RETRIEVAL = "retrieval"
    MEMORY = "memory"
    HISTORY = "history"
    TOOL_RESULT = "tool_result"
    USER = "user"


class Trust(StrEnum):
    """Whether a block's text may be treated as instructions."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


class Stability(StrEnum):
    """How often a block's content is expected to change."""

    STATIC = "static"  # same across sessions (system prompt, tool schemas)
    SESSION = "session"  # same within a conversation (retrieved context, memory, history)
    VOLATILE = "volatile"  # changes on every call (clock lines, the current user turn)


#: Kinds whose content comes from outside the application's control.
UNTRUSTED_KINDS = frozenset({BlockKind.RETRIEVAL, BlockKind.TOOL_RESULT})

_DEFAULT_STABILITY = {
    BlockKind.SYSTEM: Stability.STATIC,
    BlockKind.DEVELOPER: Stability.STATIC,
    BlockKind.TOOL_SCHEMA: Stability.STATIC,
    BlockKind.EXAMPLE: Stability.STATIC,
    BlockKind.CONTEXT: Stability.STATIC,
    BlockKind.RETRIEVAL: Stability.SESSION,
    BlockKind.MEMORY: Stability.SESSION,
    BlockKind.HISTORY: Stability.SESSION,
    BlockKind.TOOL_RESULT: Stability.SESSION,
    BlockKind.USER: Stability.VOLATILE,
}

PUBLIC_SCOPE = "public"

JsonContent = str | dict[str, Any] | list[Any]


class Block(BaseModel):
    """One labelled piece of a model request.

    ``content`` is text or JSON-compatible structured data (a tool schema, a
    tool result, a list of content parts). ``name`` identifies the block within
    its kind (a tool's name, a document id); ``role`` is the chat role for
    history blocks. ``scope`` is the security scope of what the block may be
    shared with: ``"tenant"`` (default), a narrower label such as
    ``"user:alice"``, or ``"public"`` (shared across tenants, only when the
    policy allows it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: BlockKind
    content: JsonContent
    trust: Trust = Field(default=None, validate_default=False)  # type: ignore[assignment]
    stability: Stability = Field(default=None, validate_default=False)  # type: ignore[assignment]
    tags: tuple[str, ...] = ()
    scope: str = "tenant"
    name: str | None = None
    role: str | None = None
    data_classes: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        raw_kind = data.get("kind")
        try:
            kind = BlockKind(str(raw_kind))
        except ValueError:
            choices = ", ".join(k.value for k in BlockKind)
            raise ValueError(f"Block.kind={raw_kind!r} is not a block kind; use one of: {choices}") from None
        if data.get("trust") is None:
            data = {**data, "trust": Trust.UNTRUSTED if kind in UNTRUSTED_KINDS else Trust.TRUSTED}
        elif kind in UNTRUSTED_KINDS and Trust(data["trust"]) is Trust.TRUSTED:
            raise ValueError(
                f"Block.trust: a {kind.value} block is untrusted content and cannot be "
                "labelled trusted; leave trust unset (it defaults to 'untrusted')"
            )
        if data.get("stability") is None:
            data = {**data, "stability": _DEFAULT_STABILITY[kind]}
        return data

    @property
    def label(self) -> str:
        """A short human label such as ``tool_schema 'get_user_details'`` (no content)."""
        return f"{self.kind.value} {self.name!r}" if self.name else self.kind.value


def trusted_block(
    kind: BlockKind,
    content: JsonContent,
    *,
    trust: Trust,
    stability: Stability,
    name: str | None = None,
    role: str | None = None,
    data_classes: tuple[str, ...] = (),
) -> Block:
    """Build a :class:`Block` from values the engine has already checked.

    The engine creates a block for every message of every new request from values it has
    typed itself, so this is pydantic's ``model_construct`` (no validation of the content);
    the trust rule is still enforced here.
    """
    if kind in UNTRUSTED_KINDS and trust is Trust.TRUSTED:
        raise ValueError(f"Block.trust: a {kind.value} block cannot be labelled trusted")
    return Block.model_construct(
        _fields_set={"kind", "content"},
        kind=kind,
        content=content,
        trust=trust,
        stability=stability,
        tags=(),
        scope="tenant",
        name=name,
        role=role,
        data_classes=data_classes,
    )
