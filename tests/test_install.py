"""A real install from a clone, with plain pip, the way the README tells a user to do it.

The core's distribution is ``promptcache-core`` (the PyPI name ``promptcache`` belongs to an
unrelated project), and the integrations depend on it by that name. None of the four names is
on PyPI, so a clone must install them from its own directories in one ``pip install``, and pip
must never ask an index for them: an index answer for one of those names would be someone
else's code. The install tests build fresh virtualenvs and reach PyPI for the third-party
dependencies (pip's own cache is reused); ``-m "not install"`` leaves them out of a quick run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
INTEGRATIONS = ["langchain", "langgraph", "llamaindex"]
LOCAL_DISTS = {"promptcache-core", *(f"promptcache-{name}" for name in INTEGRATIONS)}
# The one command the README gives; paths are relative to the clone's root.
ONE_COMMAND = [".", *(f"./integrations/{name}" for name in INTEGRATIONS)]
AGENT_FRAMEWORK_PREFIXES = ("langchain", "langgraph", "llama-index")
PRUNED_DIRS = {"build", "dist", "site", "node_modules", "__pycache__"}


def _pyprojects() -> Iterator[Path]:
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in PRUNED_DIRS]
        if "pyproject.toml" in files:
            yield Path(top) / "pyproject.toml"


def _requirements(data: dict[str, Any]) -> Iterator[Requirement]:
    project = data.get("project", {})
    groups = [
        project.get("dependencies", []),
        data.get("build-system", {}).get("requires", []),
        *project.get("optional-dependencies", {}).values(),
        *data.get("dependency-groups", {}).values(),
    ]
    for group in groups:
        for item in group:
            if isinstance(item, str):  # dependency-groups may also hold {include-group = ...}
                yield Requirement(item)


def test_no_pyproject_depends_on_the_bare_promptcache_distribution() -> None:
    found = list(_pyprojects())
    assert ROOT / "pyproject.toml" in found and len(found) >= 1 + len(INTEGRATIONS)
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert root["name"] == "promptcache-core"
    assert root["scripts"]["promptcache"] == "promptcache.cli:main"
    for path in found:
        data = tomllib.loads(path.read_text())
        where = path.relative_to(ROOT)
        names = {canonicalize_name(req.name) for req in _requirements(data)}
        assert "promptcache" not in names, f"{where} depends on the PyPI project 'promptcache'"
        # A misspelt sibling would not be found locally and would be looked up on an index.
        ours = {n for n in names if n.startswith("promptcache-")}
        assert ours <= LOCAL_DISTS, f"{where} names {ours - LOCAL_DISTS}, which this repository lacks"
        sources = data.get("tool", {}).get("uv", {}).get("sources", {})
        assert "promptcache" not in sources, where
        for name in ours:
            assert sources.get(name) == {"workspace": True}, f"{where}: uv would look {name} up on an index"


def _clone(dest: Path) -> Path:
    """Copy what a clone would hold (tracked and new files, not ignored ones) to ``dest``.

    A copy rather than the checkout itself: a setuptools build writes ``build/`` and
    ``*.egg-info`` into the tree it builds, which would leak into the checkout and race with
    a concurrent run, and a stale ``build/`` could hide a file the clone lacks.
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout, so there is no clone to install from: {exc}")
    for name in listed.decode().split("\0"):
        src = ROOT / name
        if name and src.is_file():  # a file deleted but not yet committed is listed too
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clone(tmp_path_factory.mktemp("clone"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, env=_env())
    return path / "bin"


def _pip_install(bin_dir: Path, clone: Path, targets: list[str], log: Path) -> dict[str, Any]:
    """Run plain ``pip install`` in ``clone``; return pip's install report."""
    report = log.with_suffix(".json")
    cmd = [str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    cmd += ["--log", str(log), "--report", str(report), *targets]
    done = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, env=_env())
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def _index_lookups(log: Path) -> list[str]:
    # pip's --log is always at debug level, where each index page it fetches is logged.
    with log.open(errors="replace") as lines:
        return [line for line in lines if "Fetching project page" in line]


@pytest.mark.install
def test_one_pip_command_installs_core_and_integrations_from_the_clone(clone: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    log = tmp_path / "pip.log"
    report = _pip_install(bin_dir, clone, ONE_COMMAND, log)

    installed = {canonicalize_name(item["metadata"]["name"]): item for item in report["install"]}
    assert installed.keys() >= LOCAL_DISTS
    for name in LOCAL_DISTS:
        info = installed[name]["download_info"]
        assert info["url"].startswith("file://") and "dir_info" in info, (name, info)
        assert not info["dir_info"].get("editable", False), name
    lookups = _index_lookups(log)
    assert lookups, "pip's log shows no index lookup at all: the check below would prove nothing"
    asked = [line for line in lookups if any(f"/{name}/" in line for name in LOCAL_DISTS)]
    assert not asked, f"pip asked an index for a name this clone provides: {asked}"

    code = (
        "import promptcache, promptcache_langchain, promptcache_langgraph, promptcache_llamaindex\n"
        "print(promptcache.__file__)"
    )
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(tmp_path / "venv"), "not a copy in the venv"

    done = subprocess.run(
        [str(bin_dir / "promptcache"), "--help"], cwd=tmp_path, capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout

    # The commands the docs show run on the data bundled in the wheel, far from any checkout.
    done = subprocess.run(
        [str(bin_dir / "promptcache"), "demo", "--core"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "clock line relocated" in done.stdout
    done = subprocess.run(
        [str(bin_dir / "promptcache"), "bench", "traces", "--out", "traces"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    traces = sorted((tmp_path / "traces").glob("*.jsonl"))
    assert len(traces) == 12 and all(t.stat().st_size > 0 for t in traces)


@pytest.mark.install
def test_core_alone_pulls_no_agent_framework(clone: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    _pip_install(bin_dir, clone, ["."], tmp_path / "pip.log")

    listed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    ).stdout
    names = {canonicalize_name(d["name"]) for d in json.loads(listed)}
    assert "promptcache-core" in names
    frameworks = sorted(n for n in names if n.startswith(AGENT_FRAMEWORK_PREFIXES))
    assert not frameworks, f"the core alone pulled agent frameworks: {frameworks}"
    assert not names & (LOCAL_DISTS - {"promptcache-core"})
