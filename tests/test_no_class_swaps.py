"""No ``__class__`` assignment in the runtime or the integrations (project rule: plain Python,
no object-identity tricks, no swapping ``__class__`` on user objects).

A static check over the source: ``x.__class__ = ...``, ``setattr(x, "__class__", ...)`` and
``object.__setattr__(x, "__class__", ...)``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _swaps(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "__class__" for t in targets):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("setattr", "__setattr__") and any(
                isinstance(a, ast.Constant) and a.value == "__class__" for a in node.args
            ):
                lines.append(node.lineno)
    return lines


def _sources() -> list[Path]:
    files = list((ROOT / "src" / "promptcache").rglob("*.py"))
    for pkg in sorted((ROOT / "integrations").iterdir()):
        files += list((pkg / "src").rglob("*.py")) if (pkg / "src").is_dir() else []
    return files


def test_no_integration_or_runtime_module_assigns_class() -> None:
    found = {f"{p.relative_to(ROOT)}:{line}" for p in _sources() for line in _swaps(p)}
    assert found == set()


def test_the_check_sees_every_form() -> None:
    probe = ROOT / "tests" / "_probe_class_swap.py"
    try:
        probe.write_text(
            "a.__class__ = B\nobject.__setattr__(a, '__class__', B)\nsetattr(a, '__class__', B)\n",
            encoding="utf-8",
        )
        assert _swaps(probe) == [1, 2, 3]
    finally:
        probe.unlink()
