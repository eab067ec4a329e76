"""The agents corpus: multi-turn request traces rendered the way real open-source agents build them.

Each trace is what one agent would send, call after call, to a Chat Completions-compatible
endpoint (through litellm for the Python agents): its real system-prompt template, its real
tool schemas and the dynamic blocks it injects, at the place and with the cadence the agent
uses. The templates and schemas are fixtures in ``lab/data/real/agents/<agent>/`` (upstream
repository, commit, path and licence in ``data/real/SOURCES.md``); the conversation content
(user requests, model replies, tool output) is synthetic and deterministic.

Where an agent places its own Anthropic ``cache_control`` markers, the bodies carry them on
the content parts (and tools) the agent marks, as litellm receives them; the benchmark strips
them for the "as sent" arm and keeps them for the "own markers" arm.

Traces (:data:`TRACES`):

* ``aider`` — aider's editblock coder (Aider-AI/aider): platform block with the current date
  in the system prompt, few-shot example messages, a repo map, the files in the chat re-sent
  after the history with their current content (edited between calls), the SEARCH/REPLACE
  reminder appended to the newest user message; markers after the examples, the repo map and
  the chat files (``ChatChunks.add_cache_control_headers``). A file is added to the chat at
  the third request, which changes the repo map.
* ``openhands`` — OpenHands CodeActAgent: static system prompt, five tools, a workspace-context
  user message (repository, runtime, today's date) after the first user message; markers on
  the system message and the last user/tool message (``apply_prompt_caching``).
* ``nanobot`` — nanobot (HKUDS/nanobot at the last commit with the clock in the system
  prompt): ``## Current Time`` to the minute at the top of the system prompt, rebuilt for
  every user message; ``MEMORY.md`` inside the system prompt, edited by the agent (through
  ``edit_file``) during the third request; markers on the system message and the last tool
  (``LiteLLMProvider._apply_cache_control``).
* ``smolagents`` — smolagents ``ToolCallingAgent``: the tool list rendered into the system
  prompt and sent as ``tools``, steps as assistant ``Calling tools:`` / user ``Observation:``
  messages. Nothing dynamic: the control trace.
* ``swe_agent`` — SWE-agent 0.7 function calling: ``{{WINDOW}}`` system prompt, bundle tools,
  the issue as the instance message, and the ``last_n_observations`` history processor
  (n=5) that rewrites the sixth-newest observation to ``Old environment output: (k lines
  omitted)`` at every step, inside the history.
* ``tau_bench`` — the recorded tau-bench airline trajectories as sent (gpt-4o agent).
* ``codex_mcp`` — Codex CLI (openai/codex) on a Chat Completions provider with the reference git
  MCP server (modelcontextprotocol/servers): its system prompt, the ``shell`` and ``update_plan``
  tools, then the MCP tools, which Codex 0.23 listed from a hash map built anew for every turn,
  so in another order each turn (openai/codex issue 2610, fixed by sorting in PR 2611).

>>> [t.name for t in build_corpus(["smolagents"])]
['smolagents']
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptcache.lab.bundled import AGENTS
from promptcache.lab.traces import build_trace

__all__ = ["TRACES", "AgentCall", "AgentTrace", "build_corpus", "fixture_paths", "strip_markers"]

Json = dict[str, Any]
#: The wall clock the traces start at: 09:58 UTC, so an hour and a day-part boundary fall inside.
START = datetime(2026, 12, 7, 9, 58, 12, tzinfo=UTC)
TENANT = "acme"
_EPHEMERAL = {"type": "ephemeral"}


class AgentCall(BaseModel):
    """One model call: when it was sent, for whom, and the Chat Completions body."""

    model_config = ConfigDict(frozen=True)

    ts: float = Field(description="seconds since the trace started")
    tenant: str
    body: Json


class AgentTrace(BaseModel):
    """One agent's session: its calls in order and what changes between them."""

    model_config = ConfigDict(frozen=True)

    name: str
    agent: str = Field(description="upstream repository the request builder comes from")
    dynamic: list[str] = Field(description="the blocks that change between calls, and where they sit")
    own_markers: str | None = Field(description="where the agent puts Anthropic markers; None if nowhere")
    calls: list[AgentCall]


def _read(*parts: str) -> str:
    return AGENTS.joinpath(*parts).read_text(encoding="utf-8")


def _json(*parts: str) -> Any:
    return json.loads(_read(*parts))


def _mark(msg: Json) -> Json:
    """litellm-style marker on a message: its content as parts, the last one marked."""
    content = msg["content"]
    parts: list[Json] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else [dict(p) for p in content]
    )
    parts[-1] = {**parts[-1], "cache_control": dict(_EPHEMERAL)}
    return {**msg, "content": parts}


def _parts(text: str) -> list[Json]:
    return [{"type": "text", "text": text}]


def _xml(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def strip_markers(body: Json) -> Json:
    """``body`` without ``cache_control`` anywhere (what reaches a provider that has no markers)."""

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k != "cache_control"}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    out: Json = clean(body)
    return out


def _call_id(rng: random.Random) -> str:
    return "call_" + "".join(
        rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789") for _ in range(24)
    )


def _tool_call(rng: random.Random, name: str, args: Json) -> Json:
    return {
        "id": _call_id(rng),
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def _code(rng: random.Random, name: str, lines: int) -> str:
    """A plausible Python source file (synthetic conversation content)."""
    out = [f'"""{name}: cart and pricing helpers."""', "", "from decimal import Decimal", ""]
    for i in range(lines // 6):
        verb = rng.choice(["compute", "apply", "load", "format", "check"])
        fn = f"{verb}_{rng.choice(['total', 'tax', 'discount', 'line', 'order'])}_{i}"
        out += [
            f"def {fn}(items, rate=Decimal('0.{rng.randint(10, 99)}')):",
            f'    """Return the {fn.replace("_", " ")} for the given items."""',
            "    total = sum(Decimal(str(i['price'])) * i['qty'] for i in items)",
            f"    return (total * rate).quantize(Decimal('0.01'))  # {rng.randint(100, 999)}",
            "",
        ]
    return "\n".join(out) + "\n"


def _output(rng: random.Random, lines: int) -> str:
    words = ["PASSED", "FAILED", "collected", "tests/test_cart.py", "ok", "warning", "line", "total"]
    return "\n".join(
        " ".join(rng.choice(words) for _ in range(8)) + f" [{rng.randint(0, 99)}%]" for _ in range(lines)
    )


# ------------------------------------------------------------------------------------------
# aider (Aider-AI/aider, editblock coder, claude-sonnet-4-5 settings: examples as messages)
# ------------------------------------------------------------------------------------------


def _aider() -> AgentTrace:
    p = _json("aider", "editblock_prompts.json")
    rng = random.Random(11)
    fence = ("```", "```")
    # Coder.get_platform_info(): the date is the only value that changes (once a day).
    platform = (
        "- Platform: Linux-6.8.0-49-generic-x86_64-with-glibc2.39\n"
        "- Shell: SHELL=/bin/bash\n- Language: en_US\n"
        f"- Current date: {START:%Y-%m-%d}\n"
        "- The user is operating inside a git repository\n"
    )

    def fmt(s: str) -> str:
        # Coder.fmt_system_prompt: claude-sonnet-4-5 is neither lazy nor overeager.
        return s.format(
            fence=fence,
            quad_backtick_reminder="",
            final_reminders="",
            platform=platform,
            shell_cmd_prompt=p["shell_cmd_prompt"].format(platform=platform),
            rename_with_shell=p["rename_with_shell"],
            shell_cmd_reminder=p["shell_cmd_reminder"].format(platform=platform),
            go_ahead_tip=p["go_ahead_tip"],
            language="the same language they are using",
        )

    main_sys = fmt(p["main_system"]) + "\n" + fmt(p["system_reminder"])
    examples = [{"role": m["role"], "content": fmt(m["content"])} for m in p["example_messages"]]
    examples += [
        {
            "role": "user",
            "content": (
                "I switched to a new code base. Please don't consider the above files"
                " or try to edit them any longer."
            ),
        },
        {"role": "assistant", "content": "Ok."},
    ]
    files = {
        f"shop/{n}.py": _code(rng, n, 60) for n in ("cart", "pricing", "tax", "orders", "inventory", "api")
    }
    in_chat = ["shop/cart.py"]

    def repo_map() -> str:
        # RepoMap.get_repo_map: files in the chat are left out of the map.
        body = []
        for path, src in files.items():
            if path in in_chat:
                continue
            body.append(f"{path}:\n⋮")
            body += [f"│{line}" for line in src.splitlines() if line.startswith("def ")]
            body.append("⋮")
        prefix: str = p["repo_content_prefix"].format(other="other ")
        return prefix + "\n".join(body) + "\n"

    def chat_files() -> list[Json]:
        content = p["files_content_prefix"]
        for path in in_chat:
            content += f"\n{path}\n{fence[0]}\n{files[path]}{fence[1]}\n"
        return [
            {"role": "user", "content": content},
            {"role": "assistant", "content": p["files_content_assistant_reply"]},
        ]

    requests = [
        "Make compute_total_0 in cart.py round half up instead of banker's rounding.",
        "Add a docstring example to every function in cart.py.",
        "/add shop/pricing.py — now move the discount logic from cart.py into pricing.py.",
        "The tests fail with a Decimal import error, please fix it.",
        "Rename format_line_* helpers to render_line_* across both files.",
    ]
    done: list[Json] = []
    calls: list[AgentCall] = []
    ts = 0.0
    for n, req in enumerate(requests):
        if req.startswith("/add"):
            in_chat.append("shop/pricing.py")
        cur: list[Json] = [{"role": "user", "content": req}]
        for attempt in range(2 if n % 2 == 0 else 1):  # a lint/test reflection on every other request
            chunks_system = (
                [_mark({"role": "system", "content": main_sys})]
                if not examples
                else [{"role": "system", "content": main_sys}]
            )
            ex = [*examples[:-1], _mark(examples[-1])]
            repo = [
                {"role": "user", "content": repo_map()},
                _mark(
                    {
                        "role": "assistant",
                        "content": "Ok, I won't try and edit those files without asking first.",
                    }
                ),
            ]
            cf = chat_files()
            cf[-1] = _mark(cf[-1])
            sent_cur = [dict(m) for m in cur]
            # reminder == "user": the SEARCH/REPLACE rules ride on the newest user message.
            sent_cur[-1] = {
                **sent_cur[-1],
                "content": sent_cur[-1]["content"] + "\n\n" + fmt(p["system_reminder"]),
            }
            messages = [*chunks_system, *ex, *repo, *done, *cf, *sent_cur]
            calls.append(
                AgentCall(
                    ts=ts,
                    tenant=TENANT,
                    body={
                        "model": "claude-sonnet-4-5",
                        "messages": messages,
                        "stream": True,
                        "temperature": 0,
                    },
                )
            )
            reply = (
                f"I'll update {in_chat[-1]}.\n\n{in_chat[-1]}\n{fence[0]}python\n<<<<<<< SEARCH\n"
                "    return total\n=======\n    return total.quantize(Decimal('0.01'))\n"
                f">>>>>>> REPLACE\n{fence[1]}"
            )
            cur.append({"role": "assistant", "content": reply})
            # The edit lands in the file, so the chat-files block changes before the next call.
            path = in_chat[-1]
            files[path] = files[path].replace(
                "    return (total", f"    # edited in request {n}.{attempt}\n    return (total", 1
            )
            if attempt == 0 and n % 2 == 0:
                cur.append(
                    {
                        "role": "user",
                        "content": "# Fix any errors below, if possible.\n\n## Running: pytest -q\n\n"
                        + _output(rng, 12),
                    }
                )
            ts += rng.uniform(25, 70)
        done += cur
        ts += rng.uniform(30, 90)
    return AgentTrace(
        name="aider",
        agent="Aider-AI/aider",
        dynamic=[
            "current date in the system prompt (daily)",
            "repo map message before the history (changes when a file joins the chat)",
            "files in the chat with their current content, re-sent after the history on every call",
            "SEARCH/REPLACE reminder appended to the newest user message",
        ],
        own_markers="after the few-shot examples, after the repo map, after the chat files",
        calls=calls,
    )


# ------------------------------------------------------------------------------------------
# OpenHands CodeActAgent
# ------------------------------------------------------------------------------------------


def _openhands() -> AgentTrace:
    rng = random.Random(13)
    system = _read("openhands", "system_prompt.md").rstrip("\n")
    tools = _json("openhands", "tools.json")
    context = _read("openhands", "workspace_context.md").rstrip("\n").replace("{DATE}", f"{START:%Y-%m-%d}")
    history: list[Json] = [
        {
            "role": "user",
            "content": "The cart total is off by a cent for some orders in acme/webshop."
            " Find and fix it, with a test.",
        },
        {"role": "user", "content": context},
    ]
    # Message.serialize_model: with function calling on, every content is a list of parts.
    history = [{**m, "content": _parts(m["content"])} for m in history]
    steps: list[tuple[str, Json]] = [
        ("execute_bash", {"command": "cd /workspace/webshop && git status && ls", "security_risk": "LOW"}),
        (
            "str_replace_editor",
            {"command": "view", "path": "/workspace/webshop/shop/cart.py", "security_risk": "LOW"},
        ),
        ("execute_bash", {"command": "grep -rn quantize shop | head -20", "security_risk": "LOW"}),
        (
            "task_tracker",
            {"command": "plan", "task_list": [{"id": "1", "title": "reproduce", "status": "in_progress"}]},
        ),
        ("execute_bash", {"command": "python -m pytest -q tests/test_cart.py", "security_risk": "LOW"}),
        ("think", {"thought": "The rounding happens per line, not on the total; that explains the cent."}),
        (
            "str_replace_editor",
            {
                "command": "str_replace",
                "path": "/workspace/webshop/shop/cart.py",
                "old_str": "return (total",
                "new_str": "return (total",
                "security_risk": "MEDIUM",
            },
        ),
        (
            "str_replace_editor",
            {
                "command": "create",
                "path": "/workspace/webshop/tests/test_rounding.py",
                "file_text": "def test_rounding():\n    assert True\n",
                "security_risk": "LOW",
            },
        ),
        ("execute_bash", {"command": "python -m pytest -q", "security_risk": "LOW"}),
        ("execute_bash", {"command": "git diff --stat", "security_risk": "LOW"}),
        (
            "task_tracker",
            {"command": "plan", "task_list": [{"id": "1", "title": "reproduce", "status": "done"}]},
        ),
        ("finish", {"message": "Fixed the rounding and added a test."}),
    ]
    calls: list[AgentCall] = []
    ts = 0.0
    for name, args in steps:
        messages = [{"role": "system", "content": _parts(system)}, *history]
        # ConversationMemory.apply_prompt_caching: system, and the last user or tool message.
        messages[0] = _mark(messages[0])
        last = max(i for i, m in enumerate(messages) if m["role"] in ("user", "tool"))
        messages[last] = _mark(messages[last])
        calls.append(
            AgentCall(
                ts=ts,
                tenant=TENANT,
                body={"model": "claude-sonnet-4-5", "messages": messages, "tools": tools, "temperature": 0},
            )
        )
        tc = _tool_call(rng, name, args)
        thought = f"Running {name} next."
        history.append({"role": "assistant", "content": _parts(thought), "tool_calls": [tc]})
        out = _code(rng, "cart", 48) if args.get("command") == "view" else _output(rng, rng.randint(4, 30))
        history.append({"role": "tool", "tool_call_id": tc["id"], "name": name, "content": _parts(out)})
        ts += rng.uniform(6, 40)
    return AgentTrace(
        name="openhands",
        agent="All-Hands-AI/OpenHands",
        dynamic=[
            "workspace context with today's date as the second user message (fixed within the conversation)"
        ],
        own_markers="end of the system prompt and the last user/tool message",
        calls=calls,
    )


# ------------------------------------------------------------------------------------------
# nanobot (clock in the system prompt, MEMORY.md in the system prompt)
# ------------------------------------------------------------------------------------------


def _nanobot() -> AgentTrace:
    rng = random.Random(17)
    identity = _read("nanobot", "identity.md")
    tools = _json("nanobot", "tools.json")
    skills = _json("nanobot", "skills.json")
    ws = "/home/sam/.nanobot/workspace"
    bootstrap = "\n\n".join(
        f"## {f}\n\n{_read('nanobot', 'bootstrap', f)}"
        for f in ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md")
    )
    summary = ["<skills>"]
    for s in skills:
        summary += [
            '  <skill available="true">',
            f"    <name>{s['name']}</name>",
            f"    <description>{_xml(s['description'])}</description>",
            f"    <location>/usr/lib/python3.12/site-packages/nanobot/skills/{s['name']}/SKILL.md</location>",
            "  </skill>",
        ]
    summary.append("</skills>")
    memory = _read("nanobot", "MEMORY.md")

    def system_prompt(now: datetime) -> str:
        # ContextBuilder.build_system_prompt + build_messages' "## Current Session" tail.
        parts = [
            identity.format(
                now=f"{now:%Y-%m-%d %H:%M (%A)}",
                tz="UTC",
                runtime="Linux x86_64, Python 3.12.3",
                workspace_path=ws,
            ),
            bootstrap,
            f"# Memory\n\n## Long-term Memory\n{memory}",
            f"# Active Skills\n\n### Skill: memory\n\n{_read('nanobot', 'skill_memory.md').strip()}",
            "# Skills\n\nThe following skills extend your capabilities."
            " To use a skill, read its SKILL.md file using the read_file tool.\n"
            'Skills with available="false" need dependencies installed first'
            " - you can try installing them with apt/brew.\n\n" + "\n".join(summary),
        ]
        return "\n\n---\n\n".join(parts) + "\n\n## Current Session\nChannel: cli\nChat ID: direct"

    turns = [
        (
            "Summarize the open issues in ~/src/shop and tell me which one to do first.",
            [
                ("exec", {"command": "cd ~/src/shop && gh issue list --limit 20"}),
                ("read_file", {"path": "~/src/shop/README.md"}),
            ],
        ),
        (
            "OK, the rounding one. Look at the code.",
            [
                ("exec", {"command": "grep -rn quantize ~/src/shop"}),
                ("read_file", {"path": "~/src/shop/shop/cart.py"}),
            ],
        ),
        (
            "Remember that I want fixes as small PRs with a test each, and that I'm in Lisbon (UTC+0).",
            [
                (
                    "edit_file",
                    {
                        "path": f"{ws}/memory/MEMORY.md",
                        "old_text": "(User preferences learned over time)",
                        "new_text": "- Wants fixes as small PRs, one test each\n- Lives in Lisbon (UTC+0)",
                    },
                )
            ],
        ),
        (
            "Draft the PR description for the rounding fix.",
            [("read_file", {"path": "~/src/shop/CONTRIBUTING.md"})],
        ),
        (
            "What's the weather in Lisbon tomorrow? I might ride to the office.",
            [
                ("web_search", {"query": "Lisbon weather tomorrow"}),
                ("web_fetch", {"url": "https://wttr.in/Lisbon?format=3"}),
            ],
        ),
        (
            "Remind me at 5pm to open the PR.",
            [("cron", {"action": "add", "message": "Open the rounding PR", "at": "17:00"})],
        ),
    ]
    history: list[Json] = []
    calls: list[AgentCall] = []
    ts = 0.0
    for text, actions in turns:
        # build_messages runs once per user message: the clock and memory are frozen for its iterations.
        system = system_prompt(START + timedelta(seconds=ts))
        msgs: list[Json] = [{"role": "user", "content": text}]
        for i in range(len(actions) + 1):
            body_msgs = [_mark({"role": "system", "content": system}), *history, *msgs]
            marked = [dict(t) for t in tools]
            marked[-1] = {**marked[-1], "cache_control": dict(_EPHEMERAL)}
            calls.append(
                AgentCall(
                    ts=ts,
                    tenant=TENANT,
                    body={
                        "model": "claude-sonnet-4-5",
                        "messages": body_msgs,
                        "tools": marked,
                        "max_tokens": 8192,
                        "temperature": 0.1,
                    },
                )
            )
            if i < len(actions):
                name, args = actions[i]
                tc = _tool_call(rng, name, args)
                msgs.append({"role": "assistant", "content": "Let me check that.", "tool_calls": [tc]})
                msgs.append(
                    {
                        "role": "tool",
                        "tool_call_id": tc["id"],
                        "name": name,
                        "content": _output(rng, rng.randint(5, 25)),
                    }
                )
                if name == "edit_file":
                    memory = memory.replace(args["old_text"], args["new_text"])
                ts += rng.uniform(4, 20)
            else:
                msgs.append({"role": "assistant", "content": "Done. " + _output(rng, 3)})
        history += msgs
        ts += rng.uniform(60, 240)
    return AgentTrace(
        name="nanobot",
        agent="HKUDS/nanobot",
        dynamic=[
            "current time to the minute at the top of the system prompt (rebuilt per user message)",
            "MEMORY.md inside the system prompt, edited by the agent in the third request",
        ],
        own_markers="end of the system prompt and the last tool",
        calls=calls,
    )


# ------------------------------------------------------------------------------------------
# smolagents ToolCallingAgent (no dynamic blocks: the control)
# ------------------------------------------------------------------------------------------


def _smolagents() -> AgentTrace:
    rng = random.Random(19)
    system = _read("smolagents", "toolcalling_system_prompt.md")
    tools = _json("smolagents", "tools.json")
    tasks = [
        (
            "Which Python release introduced the match statement, and in what month was it released?",
            ["web_search", "visit_webpage", "web_search", "final_answer"],
        ),
        (
            "Find the licence of the smolagents repository and the year it was first released.",
            ["web_search", "visit_webpage", "final_answer"],
        ),
    ]
    calls: list[AgentCall] = []
    ts = 0.0
    for task, actions in tasks:
        # A new run() resets the memory: system prompt + "New task:" + the steps so far.
        msgs: list[Json] = [
            {"role": "system", "content": [{"type": "text", "text": system}]},
            {"role": "user", "content": [{"type": "text", "text": f"New task:\n{task}"}]},
        ]
        for name in actions:
            calls.append(
                AgentCall(
                    ts=ts,
                    tenant=TENANT,
                    body={
                        "model": "gpt-4o",
                        "messages": [dict(m) for m in msgs],
                        "tools": tools,
                        "tool_choice": "required",
                    },
                )
            )
            args = (
                {"answer": "Python 3.10, October 2021"}
                if name == "final_answer"
                else {"query": task[:40]}
                if name == "web_search"
                else {"url": "https://docs.python.org/3/whatsnew/3.10.html"}
            )
            tc = {"id": _call_id(rng), "type": "function", "function": {"name": name, "arguments": args}}
            # ActionStep.to_messages: TOOL_CALL -> assistant, TOOL_RESPONSE -> user.
            msgs.append(
                {"role": "assistant", "content": [{"type": "text", "text": "Calling tools:\n" + str([tc])}]}
            )
            msgs.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Observation:\n" + _output(rng, rng.randint(6, 30))}
                    ],
                }
            )
            ts += rng.uniform(5, 25)
        ts += rng.uniform(30, 120)
    return AgentTrace(
        name="smolagents",
        agent="huggingface/smolagents",
        dynamic=[],
        own_markers=None,
        calls=calls,
    )


# ------------------------------------------------------------------------------------------
# SWE-agent 0.7 function calling (last_n_observations rewrites the history)
# ------------------------------------------------------------------------------------------


def _swe_tool(t: Json) -> Json:
    # sweagent.tools.commands: a Command as an OpenAI function (docstring as description).
    args = t.get("arguments") or []
    return {
        "type": "function",
        "function": {
            "name": t["name"],
            "description": (t.get("docstring") or "").strip(),
            "parameters": {
                "type": "object",
                "properties": {a["name"]: {"type": a["type"], "description": a["description"]} for a in args},
                "required": [a["name"] for a in args if a.get("required")],
            },
        },
    }


def _swe_agent() -> AgentTrace:
    rng = random.Random(23)
    tpl = _json("swe_agent_07_fcalling_templates.json")
    bundle = _json("swe_agent", "bundle_tools.json")
    bash = {
        "name": "bash",
        "docstring": "runs the given command directly in bash",
        "arguments": [
            {
                "name": "command",
                "type": "string",
                "description": "The bash command to execute.",
                "required": True,
            }
        ],
    }
    tools = [_swe_tool(t) for t in [bash, *bundle]]
    system = tpl["system_template"].replace("{{WINDOW}}", str(tpl["_env_variables"]["WINDOW"]))
    issue = (
        "Cart.total() rounds each line before summing, so totals can be off by one cent.\n\n"
        "To reproduce:\n```python\nfrom shop.cart import Cart\n"
        "c = Cart([{'price': '0.105', 'qty': 3}])\nprint(c.total())  # 0.31, expected 0.32\n```"
    )
    instance = (
        tpl["instance_template"].replace("{{problem_statement}}", issue).replace("{{working_dir}}", "/shop")
    )
    steps: list[tuple[str, Json]] = [
        ("bash", {"command": "ls"}),
        ("find_file", {"file_name": "cart.py"}),
        ("open", {"path": "shop/cart.py"}),
        ("goto", {"line_number": 40}),
        ("create", {"filename": "reproduce.py"}),
        ("edit", {"start_line": 1, "end_line": 1, "replacement_text": "print(1)"}),
        ("bash", {"command": "python reproduce.py"}),
        ("search_file", {"search_term": "quantize"}),
        ("edit", {"start_line": 42, "end_line": 44, "replacement_text": "    return total"}),
        ("bash", {"command": "python reproduce.py"}),
        ("bash", {"command": "python -m pytest -q"}),
        ("bash", {"command": "rm reproduce.py"}),
        ("submit", {}),
    ]
    raw: list[Json] = [{"role": "system", "content": system}, {"role": "user", "content": instance}]
    calls: list[AgentCall] = []
    ts = 0.0
    n_keep = int(tpl["_history_processors"][0]["n"])
    for name, args in steps:
        # LastNObservations: every tool observation but the last n is elided (in the sent copy only).
        obs = [i for i, m in enumerate(raw) if m["role"] == "tool"]
        elide = set(obs[:-n_keep]) if len(obs) > n_keep else set()
        sent = [
            {**m, "content": f"Old environment output: ({len(m['content'].splitlines())} lines omitted)"}
            if i in elide
            else m
            for i, m in enumerate(raw)
        ]
        calls.append(
            AgentCall(
                ts=ts,
                tenant=TENANT,
                body={"model": "claude-sonnet-4-5", "messages": sent, "tools": tools, "temperature": 0.0},
            )
        )
        tc = _tool_call(rng, name, args)
        raw.append(
            {"role": "assistant", "content": f"DISCUSSION\nNext I will run {name}.", "tool_calls": [tc]}
        )
        out = _code(rng, "cart", 100) if name in ("open", "goto") else _output(rng, rng.randint(3, 20))
        obs_text = (
            tpl["next_step_template"]
            .replace("{{observation}}", out)
            .replace("{{open_file}}", "/shop/shop/cart.py")
            .replace("{{working_dir}}", "/shop")
        )
        raw.append({"role": "tool", "tool_call_id": tc["id"], "content": obs_text})
        ts += rng.uniform(5, 30)
    return AgentTrace(
        name="swe_agent",
        agent="SWE-agent/SWE-agent",
        dynamic=[
            "observations older than the last 5 elided in place, one more at every step (inside the history)"
        ],
        own_markers=None,
        calls=calls,
    )


# ------------------------------------------------------------------------------------------
# Codex CLI with an MCP server (tool order from a hash map, re-listed every turn)
# ------------------------------------------------------------------------------------------


def _codex_mcp_tool(server: str, tool: Json) -> Json:
    # mcp_tool_to_openai_tool, then create_tools_json_for_chat_completions_api: the MCP input
    # schema as mcp_types keeps it (properties, required, type), under the qualified name.
    schema = tool["inputSchema"]
    params = {
        "properties": schema.get("properties", {}),
        "required": schema.get("required"),
        "type": "object",
    }
    return {
        "type": "function",
        "function": {
            "name": f"{server}__{tool['name']}",
            "description": tool["description"],
            "parameters": params,
        },
    }


def _codex_mcp() -> AgentTrace:
    rng = random.Random(29)
    prompt = _read("codex", "prompt.md")
    start, end = prompt.index("<!-- js_repl:start -->"), prompt.index("<!-- js_repl:end -->")
    # The js_repl section sits between its markers; with that feature off it is left out.
    system = prompt[:start] + prompt[end + len("<!-- js_repl:end -->\n\n") :]
    builtin = _json("codex", "builtin_tools.json")
    mcp = [_codex_mcp_tool("git", t) for t in _json("codex", "mcp_git_list_tools.json")["tools"]]
    env = (
        "<environment_context>\n  <cwd>/home/sam/src/shop</cwd>\n"
        "  <approval_policy>on-request</approval_policy>\n"
        "  <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n"
        "  <shell>bash</shell>\n</environment_context>"
    )
    turns: list[tuple[str, list[tuple[str, Json]]]] = [
        (
            "What changed on this branch since main? Summarize it for a PR description.",
            [
                ("git__git_status", {"repo_path": "/home/sam/src/shop"}),
                ("git__git_log", {"repo_path": "/home/sam/src/shop", "max_count": 10}),
                ("git__git_diff", {"repo_path": "/home/sam/src/shop", "target": "main"}),
            ],
        ),
        (
            "The rounding change in cart.py needs a test. Add one and run the suite.",
            [
                ("update_plan", {"plan": [{"step": "Add rounding test", "status": "in_progress"}]}),
                ("shell", {"command": ["bash", "-lc", "rg -n quantize shop"]}),
                ("shell", {"command": ["bash", "-lc", "python -m pytest -q tests/test_cart.py"]}),
                ("git__git_diff_unstaged", {"repo_path": "/home/sam/src/shop"}),
            ],
        ),
        (
            "Good. Stage it and commit with a short message.",
            [
                ("git__git_add", {"repo_path": "/home/sam/src/shop", "files": ["tests/test_cart.py"]}),
                ("git__git_commit", {"repo_path": "/home/sam/src/shop", "message": "Test half-up rounding"}),
            ],
        ),
        (
            "Which branches already contain the fix for the tax bug?",
            [("git__git_branch", {"repo_path": "/home/sam/src/shop", "branch_type": "all"})],
        ),
    ]
    history: list[Json] = [{"role": "user", "content": env}]
    calls: list[AgentCall] = []
    ts = 0.0
    for text, actions in turns:
        # McpConnectionManager::list_all_tools built a new HashMap of the MCP tools for each turn:
        # its iteration order (a random hasher seed per map) differs from turn to turn.
        listed = list(mcp)
        rng.shuffle(listed)
        tools = [*builtin, *listed]
        msgs: list[Json] = [{"role": "user", "content": text}]
        for i in range(len(actions) + 1):
            calls.append(
                AgentCall(
                    ts=ts,
                    tenant=TENANT,
                    body={
                        "model": "gpt-5",
                        "messages": [{"role": "system", "content": system}, *history, *msgs],
                        "tools": tools,
                        "tool_choice": "auto",
                        "parallel_tool_calls": False,
                        "stream": True,
                    },
                )
            )
            if i < len(actions):
                name, args = actions[i]
                tc = _tool_call(rng, name, args)
                msgs.append({"role": "assistant", "content": None, "tool_calls": [tc]})
                msgs.append(
                    {"role": "tool", "tool_call_id": tc["id"], "content": _output(rng, rng.randint(4, 30))}
                )
                ts += rng.uniform(3, 15)
            else:
                msgs.append({"role": "assistant", "content": "Done. " + _output(rng, 4)})
        history += msgs
        ts += rng.uniform(40, 180)
    return AgentTrace(
        name="codex_mcp",
        agent="openai/codex",
        dynamic=[
            "MCP tools (the git server's 12) re-listed in a new order every turn, after the built-in tools"
        ],
        own_markers=None,
        calls=calls,
    )


# ------------------------------------------------------------------------------------------
# tau-bench (recorded)
# ------------------------------------------------------------------------------------------


def _tau_bench() -> AgentTrace:
    lines = build_trace("clean", domain="airline", tasks=[0, 3], tenant=TENANT)
    return AgentTrace(
        name="tau_bench",
        agent="sierra-research/tau-bench",
        dynamic=[],
        own_markers=None,
        calls=[AgentCall(ts=line.ts, tenant=line.tenant, body=line.body) for line in lines],
    )


_BUILDERS: dict[str, Callable[[], AgentTrace]] = {
    "aider": _aider,
    "openhands": _openhands,
    "nanobot": _nanobot,
    "smolagents": _smolagents,
    "swe_agent": _swe_agent,
    "tau_bench": _tau_bench,
    "codex_mcp": _codex_mcp,
}
#: Every trace of the corpus, in report order.
TRACES: tuple[str, ...] = tuple(_BUILDERS)


def build_corpus(names: Sequence[str] | None = None) -> list[AgentTrace]:
    """The corpus traces named (all by default), rendered from the bundled fixtures."""
    unknown = [n for n in names or () if n not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown trace(s) {', '.join(unknown)}: use {', '.join(TRACES)}")
    return [_BUILDERS[n]() for n in names or TRACES]


def fixture_paths() -> list[Path]:
    """Every fixture file the corpus reads (for the provenance check against ``SOURCES.md``)."""
    return sorted(p for p in AGENTS.rglob("*") if p.is_file() and p.parent != AGENTS)
