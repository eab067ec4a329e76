"""Every docstring example in the promptcache package is run and must hold.

One test per module, so a stale example names the module it sits in.
(Run here rather than with --doctest-modules, which would also import every
conftest.py as a module named ``conftest``.)
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import promptcache

MODULES = sorted(m.name for m in pkgutil.walk_packages(promptcache.__path__, "promptcache."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}"
