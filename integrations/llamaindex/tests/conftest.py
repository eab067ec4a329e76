"""Registers the LlamaIndex test fixtures.

They live in ``li_fixtures.py`` so test modules can import its helpers by a
unique module name (``conftest`` is a name every test folder has). The
autouse fixture is named explicitly: ``import *`` skips underscore names.
"""

from li_fixtures import *  # noqa: F403
from li_fixtures import _clean_settings  # noqa: F401
