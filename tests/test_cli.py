"""The ``promptcache`` command as a finished tool: version, help pages, progress only on a terminal."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from promptcache.cli import COMMANDS, build_parser, walk_parsers
from promptcache.lab.traces import build_trace, write_trace
from promptcache.pseudonym import tenant_label

CLI = [sys.executable, "-m", "promptcache.cli"]
REST = re.compile(r"``|:(?:class|mod|func|meth|data|attr|exc|obj|ref|doc):`|^\s*=+\s+=+|^\.\. \w+::", re.M)


def test_version_is_printed() -> None:
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert re.fullmatch(r"promptcache \d+\.\d+\S*\n", done.stdout)


def _help(parser: argparse.ArgumentParser) -> str:
    return parser.format_help()


def test_every_option_has_plain_help() -> None:
    """Walk every subparser: each option and argument says what it is for, with no reST markup."""
    parsers = list(walk_parsers(build_parser()))
    names = {prog for prog, _ in parsers}
    for command in ("demo", "emulate", "bench", "bench hitrate", "bench traces", "audit", "invalidate"):
        assert f"promptcache {command}" in names
    assert {"promptcache stats", "promptcache report", "promptcache replay"} <= names
    for prog, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            label = "/".join(action.option_strings) or action.dest
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{prog} {choice.dest}: a subcommand without help"
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{prog} {label}: no help text"
        text = _help(parser)
        found = REST.search(text)
        assert found is None, f"{prog} --help shows reST markup: {found.group(0)!r}"


def _listing(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [(choice.dest, choice.help) for choice in sub._choices_actions]


def test_the_listing_before_a_command_loads_is_the_one_after() -> None:
    """``promptcache --help`` lists the commands from cli.COMMANDS without importing them; each
    command's own register() says the same, in the same order, once it is loaded."""
    parser = build_parser()
    before = _listing(parser)
    assert before == [(c.name, c.help) for c in COMMANDS]
    list(walk_parsers(parser))  # loads every command
    assert _listing(parser) == before
    # the loaded parsers are the ones that parse
    assert callable(parser.parse_args(["stats", "--json"]).func)
    assert parser.parse_args(["bench", "traces", "--out", "x"]).bench_command == "traces"


def test_help_pages_in_a_subprocess_are_plain() -> None:
    for command in (["replay"], ["stats"], ["audit"], ["bench", "hitrate"]):
        done = subprocess.run(
            [*CLI, *command, "--help"], capture_output=True, text=True, timeout=60, check=True
        )
        assert REST.search(done.stdout) is None, done.stdout


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal and stdout on a pipe: (exit code, stdout, stderr)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    err = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read() if proc.stdout else b""
    code = proc.wait(timeout=120)
    os.close(master)
    return code, out.decode(), err.decode(errors="replace")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "requests.jsonl"
    write_trace(path, build_trace("combined", tasks=[0, 1, 2]))
    return path


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["audit", "LOG", "--json"], "auditing"),
        (["bench", "hitrate", "LOG", "--provider", "openai", "--json"], "simulating"),
        (["replay", "LOG", "--json"], "replaying"),
        (["report", "LOG", "--out", "report", "--json"], "reading inputs"),
    ],
)
def test_progress_on_a_terminal_never_touches_json_on_stdout(log: Path, args: list[str], label: str) -> None:
    pytest.importorskip("rich", reason="progress is drawn with rich (the cli extra)")
    argv = [str(log) if a == "LOG" else a for a in args]
    code, out, err = _run_on_a_terminal(argv, log.parent)
    assert code == 0, err
    json.loads(out)  # stdout is exactly the JSON document
    assert label in err  # the progress display went to the terminal


def test_no_progress_when_stderr_is_not_a_terminal(log: Path) -> None:
    done = subprocess.run(
        [*CLI, "audit", str(log), "--json"], capture_output=True, text=True, timeout=300, check=True
    )
    json.loads(done.stdout)
    assert done.stderr == ""


WITHOUT_RICH = (
    "import sys; sys.modules['rich'] = None\n"  # rich not installed: every import of it fails
    "from promptcache.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_the_commands_work_without_rich(log: Path, tmp_path: Path) -> None:
    """rich is optional (the cli extra): without it the output is plain and there is no progress."""
    master, slave = pty.openpty()  # a terminal, so only the missing rich keeps progress away
    try:
        done = subprocess.run(
            [sys.executable, "-c", WITHOUT_RICH, "audit", str(log), "--json"],
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=300,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 0
    json.loads(done.stdout)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from promptcache import PromptCache; from promptcache.usage import CacheUsage; "
            f"c = PromptCache(store={str(tmp_path)!r}); "
            "c.record_usage(CacheUsage(provider='openai', model='gpt-4o', input_tokens=10), tenant='t'); "
            "c.close()",
        ],
        check=True,
        timeout=120,
    )
    stats = subprocess.run(
        [sys.executable, "-c", WITHOUT_RICH, "stats", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout.splitlines()[0])["tenant"] == tenant_label("t")  # keyed hash
