"""The ``secret_detection`` section of ``make reliability`` (issue 19, item 1): recall and false positives.

Recall is measured on the generated corpus (:func:`benchmarks.reliability_corpus.secrets_corpus`:
seeded, synthetic, every kind issues 9 and 19 list) in three forms, each the form promptcache
really scans: the text alone; the text as a field of a tool result in a chat message
(rendered with :func:`promptcache.scan.visible_text`, as the message scan reads it); and the
text inside a dataclass stored by the tool cache (:func:`encode_scanned`). False positives are
counted per document on real text: the repository's docs, the standard library's docstrings
and the bundled fixtures under ``src/promptcache/lab/data``. The scan's cost is measured in the
same run, as a ratio to ``json.dumps`` of the same texts. Nothing here prints a secret.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import reliability_corpus as corpus

ROOT = Path(__file__).resolve().parents[1]

#: Targets of issue 19: recall at least 99 %, false positives on at most 0.1 % of documents.
RECALL_TARGET = 0.99
FP_TARGET = 0.001


@dataclasses.dataclass
class _ToolResult:
    """A tool result of an object type (what the storage encoder must scan field by field)."""

    name: str
    body: str


def _found_raw(text: str) -> bool:
    from promptcache.detect import SECRET, scan_sensitive

    return any(f.data_class == SECRET for f in scan_sensitive(text))


def _found_in_message(text: str) -> bool:
    from promptcache.detect import SECRET, scan_sensitive
    from promptcache.scan import visible_text

    msg = {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"output": text})}
    return any(f.data_class == SECRET for f in scan_sensitive(visible_text(msg)))


def _found_in_object(text: str) -> bool:
    from promptcache.artifacts._common import encode_scanned
    from promptcache.detect import SECRET

    _, classes = encode_scanned("tool_output", {"result": _ToolResult("lookup", text)})
    return SECRET in classes


FORMS = {"text": _found_raw, "json_in_message": _found_in_message, "dataclass_tool_result": _found_in_object}


def recall() -> dict[str, Any]:
    """Detected / total per kind and per form, on the generated corpus."""
    items = corpus.secrets_corpus()
    total: Counter[str] = Counter(s.kind for s in items)
    found: dict[str, Counter[str]] = {form: Counter() for form in FORMS}
    for s in items:
        for form, fn in FORMS.items():
            if fn(s.text):
                found[form][s.kind] += 1
    by_form = {form: round(sum(c.values()) / len(items), 4) for form, c in found.items()}
    missed = {
        form: {k: total[k] - c[k] for k in total if c[k] < total[k]}
        for form, c in found.items()
        if by_form[form] < 1
    }
    by_kind = {k: round(min(found[f][k] for f in FORMS) / n, 4) for k, n in sorted(total.items())}
    return {
        "secrets": len(items),
        "kinds": len(total),
        "listed_kinds": len({s.kind for s in items if s.listed}),
        "recall": min(by_form.values()),
        "recall_by_form": by_form,
        "recall_by_kind": by_kind,
        "missed_by_form": missed,
    }


def _documents(quick: bool) -> dict[str, list[str]]:
    from promptcache.lab.bundled import REAL

    docs = list(corpus.file_texts([ROOT / "docs", ROOT / "README.md"], (".md",)))
    stdlib = list(corpus.stdlib_docstrings(1_000_000 if quick else 3_000_000))
    lab = list(corpus.file_texts([REAL.parent]))
    return {"repo_docs": docs, "stdlib_docstrings": stdlib, "lab_data": lab}


def false_positives(quick: bool) -> dict[str, Any]:
    """Documents (paragraphs, and whole files or docstrings) with a secret finding, per source."""
    from promptcache.detect import SECRET, scan_sensitive

    out: dict[str, Any] = {}
    flagged_all = docs_all = 0
    for name, texts in _documents(quick).items():
        paras = list(corpus.paragraphs(iter(texts)))
        kinds: Counter[str] = Counter()
        flagged = 0
        for p in paras:
            found = [f.kind for f in scan_sensitive(p) if f.data_class == SECRET]
            if found:
                flagged += 1
                kinds.update(found)
        whole = sum(1 for t in texts if any(f.data_class == SECRET for f in scan_sensitive(t)))
        flagged_all += flagged
        docs_all += len(paras)
        out[name] = {
            "documents": len(texts),
            "paragraphs": len(paras),
            "chars": sum(len(t) for t in texts),
            "flagged_paragraphs": flagged,
            "fp_rate_paragraphs": round(flagged / len(paras), 5) if paras else None,
            "flagged_documents": whole,
            "fp_rate_documents": round(whole / len(texts), 5) if texts else None,
            "flagged_kinds": dict(kinds.most_common(8)),
        }
    out["all_paragraphs"] = docs_all
    out["fp_rate"] = round(flagged_all / docs_all, 5) if docs_all else None
    return out


def scan_cost(quick: bool) -> dict[str, Any]:
    """Scan throughput on the real texts, and its time as a ratio to ``json.dumps`` of them."""
    from promptcache.detect import scan_sensitive

    texts = [p for ts in _documents(quick).values() for p in corpus.paragraphs(iter(ts))]
    chars = sum(len(t) for t in texts)
    best_scan = best_dump = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for t in texts:
            scan_sensitive(t)
        best_scan = min(best_scan, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for t in texts:
            json.dumps({"role": "user", "content": t})
        best_dump = min(best_dump, time.perf_counter() - t0)
    return {
        "texts": len(texts),
        "chars": chars,
        "scan_mb_per_s": round(chars / best_scan / 1e6, 2),
        "scan_over_json_dumps": round(best_scan / best_dump, 2),
    }


def secret_detection(quick: bool) -> dict[str, Any]:
    """Recall by kind and form, false positives per source, corpus sizes, scan cost."""
    r = recall()
    fp = false_positives(quick)
    cost = scan_cost(quick)
    return {
        **r,
        "false_positives": fp,
        "scan_cost": cost,
        "targets": {"recall": RECALL_TARGET, "fp_rate": FP_TARGET},
        "passed": r["recall"] >= RECALL_TARGET and (fp["fp_rate"] or 0) <= FP_TARGET,
    }
