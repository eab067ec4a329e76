"""Golden replay: prove that promptcache never loses content the model would have received.

``promptcache replay CASSETTE_OR_LOG... [--json]`` reads recorded requests (vcrpy / pydantic-ai
cassettes, and JSON-lines traces ``{"ts","tenant","format","body"}``), rewrites each through
:meth:`PromptCache.prepare_request` (one cache per file and tenant, in recording order, so values
that the engine learns to relocate are relocated as in production) and compares what the model
receives with and without promptcache. Exit code 1 when anything is lost, 2 on unreadable input.

What counts as *content* is the same for every wire format because it is defined on the JSON
body: every string leaf and every dict key of the request (system text, tool schemas, messages
and their parts, tool calls and tool results, and the call parameters), and every other scalar
leaf (numbers, booleans). Per format that is:

=====================  ===================================================================
``openai-chat``        ``messages[*]`` (system/developer/user/assistant/tool text and parts,
                       ``tool_calls[*].function.{name,arguments}``), ``tools[*]``
``openai-responses``   ``instructions``, ``input`` (string or items: message parts,
                       ``function_call``, ``function_call_output``), ``tools[*]``
``anthropic-messages`` ``system`` (string or text blocks), ``messages[*].content`` (text,
                       ``tool_use.input``, ``tool_result.content``), ``tools[*]``
``bedrock-converse``   ``system[*].text``, ``messages[*].content[*]`` (text, ``toolUse``,
                       ``toolResult``), ``toolConfig.tools[*]``
``gemini``             ``systemInstruction.parts``, ``contents[*].parts`` (text,
                       ``functionCall``, ``functionResponse``), ``tools[*]``
=====================  ===================================================================

The role of a message is content (a user turn must never become an instruction), with one
equivalence: ``system`` and ``developer`` are OpenAI's two names of the instruction role.

Caching hints are not content: ``cache_control``, ``cachePoint``, ``prompt_cache_key``,
``prompt_cache_retention`` and ``cachedContent`` are set aside on both sides (listed in the
report as hint changes). The volatile block promptcache appends (``<volatile_context>``) is parsed
back into the values it carries, and ``[volatile:N]`` markers are resolved to their values, so a
value relocated there counts as present.

The check, per request:

1. every original atom (a string, a key or a scalar, after NFC and newline normalization) that
   appears verbatim in the rewritten request is *kept* (matched as a multiset, so a duplicated
   message cannot cover a dropped one);
2. the remaining original strings are split into lines; each line must be found, verbatim and
   once, among the lines of the remaining rewritten strings and of the volatile block: *moved*;
3. anything else is *lost*. NFC/newline normalization is the only allowed change; atoms it
   changed are counted as *normalized*.

The report never prints a lost line whole: a digest, its length and a short excerpt locate it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from promptcache.canonical import canonical_text
from promptcache.engine import VOLATILE_FOOTER, VOLATILE_HEADER, PromptCache
from promptcache.formats import WireFormat

__all__ = [
    "HINT_KEYS",
    "Loss",
    "ReplayReport",
    "RequestDiff",
    "Source",
    "compare_bodies",
    "load_requests",
    "register",
    "replay",
]

#: Keys whose subtrees are provider caching hints, not content the model reads.
HINT_KEYS = frozenset(
    {"cache_control", "cachePoint", "prompt_cache_key", "prompt_cache_retention", "cachedContent"}
)

_MARKER = re.compile(r"\[volatile:\d+\]")
# One entry of the volatile block: "[source, line N] text" or "[source path] [volatile:N] = value".
_ENTRY = re.compile(
    r"^\[(?P<where>(?:[^\[\]\n]|\[\d+\])+)\] (?:(?P<marker>\[volatile:\d+\]) = )?(?P<text>.*)$"
)

# OpenAI's two spellings of the instruction role: the engine may carry a relocated system
# message in a ``developer`` item (the Responses API's name for it); the model reads both alike.
_INSTRUCTION_ROLES = frozenset({"system", "developer"})
_INSTRUCTION_ROLE = "<system|developer>"

AtomKind = Literal["text", "key", "scalar"]


class Loss(BaseModel):
    """One piece of original content the rewritten request does not carry."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="text line, key or scalar")
    where: str = Field(description="top-level field it came from (messages, system, tools, ...)")
    digest: str = Field(description="sha256 of the lost value (first 16 hex digits)")
    length: int
    excerpt: str = Field(description="the first 40 characters, to locate it")


class RequestDiff(BaseModel):
    """The comparison of one request as sent and as promptcache rewrote it."""

    model_config = ConfigDict(frozen=True)

    source: str
    index: int
    format: WireFormat
    kept: int = 0
    moved: int = Field(default=0, description="original lines found elsewhere (e.g. the volatile block)")
    normalized: int = Field(default=0, description="atoms changed by NFC / newline normalization only")
    added: int = Field(default=0, description="rewritten atoms with no original (volatile header, hints)")
    hints_before: list[str] = Field(default_factory=list)
    hints_after: list[str] = Field(default_factory=list)
    lost: list[Loss] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing was lost."""
        return not self.lost


class Skipped(BaseModel):
    """A recorded request that is not a model call (e.g. creating a Gemini cached content)."""

    model_config = ConfigDict(frozen=True)

    source: str
    index: int
    why: str


class ReplayReport(BaseModel):
    """Every request replayed, with the totals."""

    model_config = ConfigDict(frozen=True)

    requests: list[RequestDiff] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No request lost anything."""
        return all(r.ok for r in self.requests)

    def summary(self) -> dict[str, Any]:
        """Totals as plain data."""
        return {
            "requests": len(self.requests),
            "skipped": len(self.skipped),
            "with_loss": sum(1 for r in self.requests if not r.ok),
            "lost": sum(len(r.lost) for r in self.requests),
            "kept": sum(r.kept for r in self.requests),
            "moved": sum(r.moved for r in self.requests),
            "normalized": sum(r.normalized for r in self.requests),
            "ok": self.ok,
        }


class Source(BaseModel):
    """One recorded request to replay."""

    model_config = ConfigDict(frozen=True)

    source: str
    index: int
    format: WireFormat | None = None
    tenant: str = "replay"
    model: str | None = None
    body: dict[str, Any] | None = None
    skip: str | None = None


# -- atoms -----------------------------------------------------------------------------------------


def _excerpt(s: str) -> str:
    return s[:40] + ("…" if len(s) > 40 else "")


def _digest(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _atoms(body: Mapping[str, Any], hints: list[str]) -> Iterator[tuple[str, AtomKind, str]]:
    """(top-level field, kind, value) for every key and leaf of ``body`` outside hint subtrees."""

    def walk(v: Any, top: str, path: str) -> Iterator[tuple[str, AtomKind, str]]:
        if isinstance(v, Mapping):
            if len(v) == 1 and next(iter(v)) in HINT_KEYS:  # a Bedrock {"cachePoint": ...} item
                hints.append(path)
                return
            for k, x in v.items():
                if k in HINT_KEYS:
                    hints.append(f"{path}.{k}")
                    continue
                yield top, "key", str(k)
                if k == "role" and x in _INSTRUCTION_ROLES:
                    yield top, "text", _INSTRUCTION_ROLE
                    continue
                yield from walk(x, top, f"{path}.{k}")
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                yield from walk(x, top, f"{path}[{i}]")
        elif isinstance(v, str):
            yield top, "text", v
        else:
            # JSON scalars by their JSON spelling, so 1 and 1.0 and true stay distinct.
            yield top, "scalar", json.dumps(v)

    for k, v in body.items():
        if k in HINT_KEYS:
            hints.append(f"$.{k}")
            continue
        yield k, "key", str(k)
        yield from walk(v, k, f"$.{k}")


def _volatile_entries(text: str) -> tuple[list[str], dict[str, list[str]]] | None:
    """Lines carried by a volatile block, and the values behind each marker; None if not one."""
    if not (text.startswith(VOLATILE_HEADER) and text.endswith(VOLATILE_FOOTER)):
        return None
    inner = text[len(VOLATILE_HEADER) : -len(VOLATILE_FOOTER)]
    inner = inner.removesuffix("\n")
    entries: list[tuple[str | None, list[str]]] = []
    for line in inner.split("\n"):
        m = _ENTRY.match(line)
        if m is not None:
            entries.append((m.group("marker"), [m.group("text")]))
        elif entries:  # a moved block spans several lines
            entries[-1][1].append(line)
    lines: list[str] = []
    markers: dict[str, list[str]] = {}
    for marker, body in entries:
        if marker is None:
            lines.extend(body)
        else:
            markers.setdefault(marker, []).append("\n".join(body))
    return lines, markers


def _resolve(text: str, markers: dict[str, list[str]]) -> str:
    def sub(m: re.Match[str]) -> str:
        values = markers.get(m.group(0))
        return values[0] if values else m.group(0)

    return _MARKER.sub(sub, text) if "[volatile:" in text else text


def compare_bodies(
    original: Mapping[str, Any],
    rewritten: Mapping[str, Any],
    *,
    source: str = "",
    index: int = 0,
    format: WireFormat = WireFormat.OPENAI_CHAT,
) -> RequestDiff:
    """Compare the content of ``original`` with the content of ``rewritten`` (see the module doc)."""
    hints_before: list[str] = []
    hints_after: list[str] = []
    orig = list(_atoms(original, hints_before))
    new_raw = list(_atoms(rewritten, hints_after))

    extra_lines: list[str] = []
    markers: dict[str, list[str]] = {}
    new: list[tuple[str, AtomKind, str]] = []
    added = 0
    for top, kind, value in new_raw:
        vol = _volatile_entries(value) if kind == "text" else None
        if vol is None:
            new.append((top, kind, value))
            continue
        added += 1  # the block's own header and footer
        extra_lines.extend(vol[0])
        for m, vs in vol[1].items():
            markers.setdefault(m, []).extend(vs)
    new = [(t, k, _resolve(v, markers) if k != "scalar" else v) for t, k, v in new]

    normalized = 0
    want: list[tuple[str, AtomKind, str]] = []
    for top, kind, value in orig:
        canon = canonical_text(value) if kind != "scalar" else value
        if canon != value:
            normalized += 1
        want.append((top, kind, canon))

    pool = Counter((k, v) for _, k, v in new)
    kept = 0
    rest: list[tuple[str, AtomKind, str]] = []
    for top, kind, value in want:
        if pool[(kind, value)] > 0:
            pool[(kind, value)] -= 1
            kept += 1
        else:
            rest.append((top, kind, value))

    # Step 2: lines of what is left over on both sides, plus what the volatile block carries.
    line_pool: Counter[str] = Counter(extra_lines)
    for (kind, value), n in pool.items():
        if kind == "text" and n > 0:
            for _ in range(n):
                line_pool.update(value.split("\n"))
    moved = 0
    lost: list[Loss] = []
    for top, kind, value in rest:
        if kind != "text":
            lost.append(
                Loss(kind=kind, where=top, digest=_digest(value), length=len(value), excerpt=_excerpt(value))
            )
            continue
        for line in value.split("\n"):
            if line_pool[line] > 0:
                line_pool[line] -= 1
                moved += 1
            elif not line.strip():
                # A blank line only separates lines; moving the line after it takes its newline
                # along, so a missing blank separator is not content. Whitespace-only lines
                # with characters in them are still checked.
                if line:
                    lost.append(
                        Loss(kind="line", where=top, digest=_digest(line), length=len(line), excerpt="")
                    )
            else:
                lost.append(
                    Loss(
                        kind="line", where=top, digest=_digest(line), length=len(line), excerpt=_excerpt(line)
                    )
                )
    added += sum(n for n in pool.values() if n > 0)
    return RequestDiff(
        source=source,
        index=index,
        format=format,
        kept=kept,
        moved=moved,
        normalized=normalized,
        added=added,
        hints_before=hints_before,
        hints_after=hints_after,
        lost=lost,
    )


# -- inputs -------------------------------------------------------------------------------------


def _format_from_uri(uri: str) -> tuple[WireFormat | None, str | None, str | None]:
    """(wire format, model named in the URI, why it is skipped) for a recorded request URI."""
    path = unquote(urlsplit(uri).path)
    if path.endswith("/chat/completions"):
        return WireFormat.OPENAI_CHAT, None, None
    if path.endswith("/responses"):
        return WireFormat.OPENAI_RESPONSES, None, None
    if path.endswith("/messages"):
        return WireFormat.ANTHROPIC_MESSAGES, None, None
    m = re.search(r"/model/([^/]+)/(converse-stream|converse|invoke-with-response-stream|invoke)$", path)
    if m:
        fmt = (
            WireFormat.BEDROCK_CONVERSE
            if m.group(2).startswith("converse")
            else WireFormat.ANTHROPIC_MESSAGES
        )
        return fmt, m.group(1), None
    m = re.search(r"/models/([^/:]+):(generateContent|streamGenerateContent)$", path)
    if m:
        return WireFormat.GEMINI, m.group(1), None
    return None, None, f"not a model call ({path})"


def _cassette(path: Path) -> list[Source]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}: not YAML{at}; a cassette is vcrpy's YAML file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("interactions", []), list):
        raise ValueError(f"{path}: no 'interactions' list; a vcrpy cassette is a mapping with one")
    out: list[Source] = []
    for i, inter in enumerate(data.get("interactions", [])):
        req = inter.get("request") if isinstance(inter, dict) else None
        if not isinstance(req, dict):
            raise ValueError(f"{path}: interaction {i}: field 'request' is missing or not a mapping")
        fmt, model, skip = _format_from_uri(str(req.get("uri", "")))
        body: Any
        if "parsed_body" in req:
            body = req["parsed_body"]
        else:
            raw = req.get("body")
            if isinstance(raw, dict):  # vcrpy's {"string": ...} form
                raw = raw.get("string")
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", errors="replace")
            try:
                body = json.loads(raw) if raw else None
            except (json.JSONDecodeError, TypeError):
                body = None
                skip = skip or "request.body is not JSON"
        if skip is None and not isinstance(body, dict):
            skip = "no JSON body"
        out.append(
            Source(
                source=path.name,
                index=i,
                format=fmt,
                model=model,
                tenant=path.stem,
                body=body if isinstance(body, dict) else None,
                skip=skip,
            )
        )
    return out


def _trace(path: Path) -> list[Source]:
    from promptcache.lab.traces import read_trace

    return [
        Source(source=path.name, index=i, format=line.format, tenant=line.tenant, body=line.body)
        for i, line in enumerate(read_trace(path))
    ]


def load_requests(paths: Iterable[str | Path]) -> list[Source]:
    """Every recorded request in ``paths`` (``.yaml``/``.yml`` cassettes, other files JSON lines)."""
    out: list[Source] = []
    for p in map(Path, paths):
        if p.suffix in (".yaml", ".yml"):
            try:
                out.extend(_cassette(p))
            except FileNotFoundError:
                raise ValueError(f"{p}: no such file") from None
        else:
            out.extend(_trace(p))  # TraceError names the file, the line and the field
    return out


# -- replay -------------------------------------------------------------------------------------

Rewrite = Callable[[PromptCache, Source], dict[str, Any]]


def _prepare(cache: PromptCache, src: Source) -> dict[str, Any]:
    assert src.body is not None and src.format is not None
    return cache.prepare_request(src.body, format=src.format, model=src.model, tenant=src.tenant).body


def replay(
    sources: Sequence[Source],
    *,
    rewrite: Rewrite | None = None,
    cache_factory: Callable[[], PromptCache] = PromptCache,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Rewrite every request in order and compare it with the original.

    One cache per source file, so each file's family learns as it did when recorded.
    ``rewrite`` is the step under test (the engine by default; tests swap in a lossy one).
    ``progress(n)`` is called after each request.
    """
    step = rewrite if rewrite is not None else _prepare
    caches: dict[str, PromptCache] = {}
    diffs: list[RequestDiff] = []
    skipped: list[Skipped] = []
    for n, src in enumerate(sources, 1):
        if progress is not None:
            progress(n - 1)
        if src.skip is not None or src.body is None or src.format is None:
            skipped.append(Skipped(source=src.source, index=src.index, why=src.skip or "no body"))
            continue
        cache = caches.get(src.source)
        if cache is None:
            cache = caches[src.source] = cache_factory()
        original = json.loads(json.dumps(src.body))  # the rewrite must not see (or mutate) ours
        rewritten = step(cache, src)
        diffs.append(
            compare_bodies(original, rewritten, source=src.source, index=src.index, format=src.format)
        )
    return ReplayReport(requests=diffs, skipped=skipped)


def _print_table(report: ReplayReport) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is optional; a plain listing says the same
        for r in report.requests:
            status = "OK" if r.ok else f"LOST {len(r.lost)}"
            print(f"{r.source}#{r.index} {r.format.value}: kept {r.kept} moved {r.moved} {status}")
    else:
        table = Table(title="golden replay: content the model receives, with vs without promptcache")
        for col in ("request", "format", "kept", "moved", "normalized", "added", "lost"):
            table.add_column(col, justify="right" if col not in ("request", "format") else "left")
        for r in report.requests:
            table.add_row(
                f"{r.source}#{r.index}",
                r.format.value,
                str(r.kept),
                str(r.moved),
                str(r.normalized),
                str(r.added),
                "[red]" + str(len(r.lost)) + "[/red]" if r.lost else "0",
            )
        Console().print(table)
    for r in report.requests:
        for loss in r.lost:
            print(
                f"LOST {r.source}#{r.index} {loss.where} {loss.kind} sha256:{loss.digest} "
                f"({loss.length} chars) {loss.excerpt!r}",
                file=sys.stderr,
            )
    s = report.summary()
    print(
        f"{s['requests']} requests ({s['skipped']} skipped): {s['kept']} kept, {s['moved']} moved, "
        f"{s['normalized']} normalized, {s['lost']} lost -> {'OK' if s['ok'] else 'LOSS'}"
    )


def _cli(args: argparse.Namespace) -> int:
    from promptcache._cliutil import progress

    try:
        sources = load_requests(args.paths)
    except (OSError, ValueError) as exc:
        print(f"promptcache replay: {exc}", file=sys.stderr)
        return 2
    with progress("replaying", len(sources), enabled=not args.no_progress) as update:
        report = replay(sources, progress=update)
    if args.json:
        print(json.dumps({"summary": report.summary(), **report.model_dump(mode="json")}, indent=2))
    else:
        _print_table(report)
    return 0 if report.ok else 1


def register(sub: Any) -> None:
    """Add the ``replay`` subcommand to the ``promptcache`` parser."""
    p = sub.add_parser(
        "replay",
        help="replay recorded requests with and without promptcache; fail if any content is lost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="+", metavar="CASSETTE_OR_LOG", help="vcrpy cassette (.yaml) or JSONL trace"
    )
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=_cli)
