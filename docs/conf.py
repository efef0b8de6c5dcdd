"""Sphinx configuration for the pytest-sessionstate documentation.

Built with warnings as errors in CI (``sphinx-build -W``), in two builders:
``html`` (the site) and ``doctest`` (every ``.. doctest::`` and ``.. testcode::``
block of the pages runs, so the examples cannot rot).  No network access is
needed: intersphinx is off, so references to other projects' names are plain
text, while references to this project's own names are checked (nitpicky).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

# Document the checkout being built, installed or not.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest_sessionstate  # noqa: E402

project = "pytest-sessionstate"
author = "pytest-sessionstate developers"
copyright = "pytest-sessionstate developers"
release = pytest_sessionstate.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "examples/README.md", "**/.pytest_cache", "**/__pycache__"]
templates_path: list[str] = []
root_doc = "index"
highlight_language = "python3"

# -- autodoc -------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}

# -- nitpicky: references to this project's names must resolve ------------------------
nitpicky = True
# Other projects' names cannot resolve without intersphinx (it needs the network), so
# dotted names outside this package (``pathlib.Path``, ``collections.abc.Mapping``,
# ``hypothesis.strategies.SearchStrategy``...) are left as plain text.  Bare names must
# resolve, except these few that docstrings name without their module.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!pytest_sessionstate\b)[A-Za-z_][A-Za-z0-9_]*\..+"),
    (r"py:mod", r"(?!pytest_sessionstate\b).+"),
    (r"py:.*", r"InvalidArgument|SearchStrategy|RuleBasedStateMachine|Path|Any|StrPath|Tree"),
    # The type variable of the generic ContentionResult and of run()'s overloads.
    (r"py:.*", r"pytest_sessionstate\.testing\.(contention|results|checks)\.T"),
]
nitpick_ignore = [
    # pytest_sessionstate.locking's docstring names it relative to the package.
    ("py:meth", "StateManager.lock"),
]

# -- doctest -------------------------------------------------------------------------
# Each page sets up its own temporary root in a visible or ``testsetup`` block; this
# only makes sure nothing leaks between pages.
doctest_global_setup = """
import os
os.environ.pop("SESSIONSTATE_ROOT", None)
"""
doctest_test_doctest_blocks = ""  # only explicit ``.. doctest::`` blocks run

# -- HTML ----------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pytest-sessionstate {release}"
html_static_path: list[str] = []
html_show_sourcelink = False


# -- references by another spelling ----------------------------------------------------
# The toolkit's classes are documented under their public names
# (``pytest_sessionstate.ContentionSimulator``), while docstrings in their modules
# name them, their methods and their neighbours as those modules see them
# (``pytest_sessionstate.testing.contention.ContentionSimulator.run``, or just
# ``WorkerError``).  Resolve such a reference when exactly one documented object
# fits; anything else still warns.
_TOOLKIT_PATH = re.compile(r"pytest_sessionstate\.testing\.[A-Za-z_]+\.(?P<rest>.+)")


def _resolve_other_spelling(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    target: str = node["reftarget"]
    domain = env.get_domain("py")
    match = _TOOLKIT_PATH.fullmatch(target)
    if match:
        candidates = [f"pytest_sessionstate.{match['rest']}"]
    elif "." not in target:
        candidates = [
            name
            for name, entry in domain.objects.items()
            if name.endswith(f".{target}") and not entry.aliased
        ]
    else:
        return None
    if len(candidates) != 1:
        return None
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], candidates[0], node, contnode
    )


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve_other_spelling)
