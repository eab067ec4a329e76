"""Put the LangChain integration tests' folder on ``sys.path``: their fixtures and helpers are shared.

Imported first by the LangGraph test modules. Not a conftest.py: conftest.py files in sibling
test folders without ``__init__.py`` collide as one module name when run together.
"""

import sys
from pathlib import Path

_LC_TESTS = str(Path(__file__).resolve().parents[2] / "langchain" / "tests")
if _LC_TESTS not in sys.path:
    sys.path.insert(0, _LC_TESTS)
