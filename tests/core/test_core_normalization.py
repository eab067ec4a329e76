"""History text is canonicalized in every wire format, without mutating the caller's body."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from promptcache.engine import PromptCache

NFD = "cafe\u0301"  # "café" decomposed


def _body(fmt: str, text: str) -> dict[str, Any]:
    if fmt == "bedrock-converse":
        return {
            "modelId": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "system": [{"text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"text": text}]},
                {"role": "assistant", "content": [{"text": "ok"}]},
                {"role": "user", "content": [{"text": "next"}]},
            ],
        }
    if fmt == "gemini":
        return {
            "model": "gemini-2.5-flash",
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": text}]},
                {"role": "model", "parts": [{"text": "ok"}]},
                {"role": "user", "parts": [{"text": "next"}]},
            ],
        }
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": text}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "next"},
        ],
    }


@pytest.mark.parametrize("fmt", ["bedrock-converse", "gemini", "anthropic-messages"])
def test_history_text_parts_are_canonical_and_caller_body_untouched(fmt: str) -> None:
    raw = _body(fmt, f"line one\r\nline two {NFD}")
    clean = _body(fmt, "line one\nline two café")
    before = copy.deepcopy(raw)
    a = PromptCache().prepare_request(raw, format=fmt, tenant="t")
    b = PromptCache().prepare_request(clean, format=fmt, tenant="t")
    assert raw == before
    assert a.plan.conversation_key == b.plan.conversation_key
    dumped = json.dumps(a.body, ensure_ascii=False)
    assert "\\r" not in dumped and NFD not in dumped and "line two café" in dumped
