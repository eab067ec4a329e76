"""Load the bundled real-traffic cassettes and replay them through the official SDKs with vcrpy.

The cassettes are the bundled ones (``promptcache.lab.bundled.CASSETTES``) and are never edited:
pydantic-ai's cassettes, which keep bodies under ``parsed_body``, are converted into plain
vcrpy cassettes in a temporary directory at test time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import vcr
import yaml

from promptcache.lab.bundled import CASSETTES

# Headers that describe the recorded bytes on the wire, not the re-serialized JSON body.
_BODY_FRAMING_HEADERS = {"content-length", "content-encoding", "transfer-encoding"}


def cassette_names() -> list[str]:
    """Every recording in the shared cassette directory."""
    return sorted(p.name for p in CASSETTES.glob("*.yaml"))


def load_cassette(name: str) -> dict[str, Any]:
    """The cassette file as YAML data, unchanged."""
    path = CASSETTES / name
    if not path.is_file():
        pytest.fail(f"bundled cassette {path} is missing from the package data")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def request_bodies(name: str) -> list[Any]:
    """The recorded request bodies, JSON-parsed, in recording order (None for no body)."""
    bodies: list[Any] = []
    for interaction in load_cassette(name)["interactions"]:
        request = interaction["request"]
        if "parsed_body" in request:
            bodies.append(request["parsed_body"])
            continue
        raw = request.get("body")
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        bodies.append(json.loads(raw) if raw else None)
    return bodies


def request_uris(name: str) -> list[str]:
    """The recorded request URIs, in recording order."""
    return [str(i["request"]["uri"]) for i in load_cassette(name)["interactions"]]


def to_plain_vcr(data: dict[str, Any]) -> dict[str, Any]:
    """Turn a pydantic-ai cassette (``parsed_body``) into one plain vcrpy can load.

    Bodies become JSON strings; the recorded length and encoding headers are dropped since
    they describe the original bytes, not the re-serialized JSON.
    """
    out: dict[str, Any] = {"version": data.get("version", 1), "interactions": []}
    for interaction in data["interactions"]:
        request = dict(interaction["request"])
        response = dict(interaction["response"])
        if "parsed_body" in request:
            request["body"] = json.dumps(request.pop("parsed_body"))
        request.setdefault("body", None)
        request.setdefault("headers", {})
        if "parsed_body" in response:
            response["body"] = {"string": json.dumps(response.pop("parsed_body"))}
            response["headers"] = {
                k: v
                for k, v in (response.get("headers") or {}).items()
                if k.lower() not in _BODY_FRAMING_HEADERS
            }
        out["interactions"].append({"request": request, "response": response})
    return out


def plain_cassette_path(name: str, tmp_path: Path) -> Path:
    """A path vcrpy can load: the shared file itself, or a converted copy under ``tmp_path``."""
    data = load_cassette(name)
    if not any("parsed_body" in i["request"] or "parsed_body" in i["response"] for i in data["interactions"]):
        return CASSETTES / name
    target = tmp_path / name
    target.write_text(yaml.safe_dump(to_plain_vcr(data), allow_unicode=True), encoding="utf-8")
    return target


def _json_or_raw(body: object) -> object:
    if body is None or body in (b"", ""):
        return None
    text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the two request bodies are equal as JSON (key order and spacing ignored)."""
    b1, b2 = _json_or_raw(r1.body), _json_or_raw(r2.body)
    if b1 != b2:
        raise AssertionError("request bodies differ as JSON")


@contextmanager
def replay(
    name: str,
    tmp_path: Path,
    *,
    match_body: bool = True,
    match_on: Sequence[str] = (),
    require_all_played: bool = True,
) -> Iterator[Any]:
    """Replay ``name`` with vcrpy, never recording; on exit assert every interaction played.

    Requests match on method and path, plus the JSON body unless ``match_body`` is False.
    """
    matchers = ["method", "path", *match_on]
    if match_body:
        matchers.append("json_body")
    recorder = vcr.VCR(record_mode="none", match_on=matchers)
    recorder.register_matcher("json_body", json_body)
    with recorder.use_cassette(str(plain_cassette_path(name, tmp_path))) as cassette:
        yield cassette
        assert not require_all_played or cassette.all_played, (
            f"{name}: only {cassette.play_count} of {len(cassette)} recorded interactions played"
        )
