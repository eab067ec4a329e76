"""Put the LangChain tests' folder on ``sys.path``: the emulator-cassette helpers live there.

Imported first by the LlamaIndex cassette tests and recorder (``emulator_cassettes`` is shared by
the LangChain, LangGraph and LlamaIndex cassettes: one VCR configuration, one header format).
"""

import sys
from pathlib import Path

_LC_TESTS = str(Path(__file__).resolve().parents[2] / "langchain" / "tests")
if _LC_TESTS not in sys.path:
    sys.path.append(_LC_TESTS)
