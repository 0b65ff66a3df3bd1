"""The scripted Anthropic API (tests/fakes/anthropic.py), proven against the real ``claude`` CLI.

Each CLI run takes about a second; the whole module runs in ~15 s.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic import END_OF_SCRIPT, Fail, ScriptedModel, Stall, Text, ToolUse, cli_env

CLI_TIMEOUT = 60


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def claude_bin() -> str:
    path = shutil.which("claude")
    assert path, "the Claude Code CLI `claude` must be on PATH (npm install -g @anthropic-ai/claude-code)"
    return path


@pytest.fixture(scope="module")
def model():
    with ScriptedModel() as m:
        yield m


@pytest.fixture
def home(tmp_path: Path) -> str:
    h = tmp_path / "home"
    h.mkdir()
    return str(h)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    w.mkdir()
    return w


def scenario_name(prefix: str) -> str:
    """Unique per test run: the model is shared by the whole module."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def parse_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_cli(
    claude_bin: str, model: ScriptedModel, home: str, cwd: Path, prompt: str, *args: str
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    proc = subprocess.run(
        [claude_bin, "-p", prompt, "--output-format", "stream-json", "--verbose", *args],
        cwd=cwd,
        env=cli_env(model.base_url, home),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    return proc, parse_lines(proc.stdout)


def result_line(lines: list[dict]) -> dict:
    assert lines, "the CLI printed nothing"
    last = lines[-1]
    assert last["type"] == "result", last
    return last


# --------------------------------------------------------------------------------------------------
# The real CLI against the scripted model


def test_scripted_write_creates_file_and_stream_json_ends_with_result(claude_bin, model, home, workdir):
    name = scenario_name("hello")
    final = 'Done. {"type": "message", "to": "user", "content": "wrote it", "message_type": "info"}'
    model.add_scenario(
        name,
        [
            [Text("Writing the file."), ToolUse("Write", {"file_path": "hello.txt", "content": "hi\n"})],
            Text(final),
        ],
    )

    proc, lines = run_cli(
        claude_bin, model, home, workdir, f"write hello.txt [[scenario:{name}]]", "--permission-mode", "acceptEdits"
    )

    assert proc.returncode == 0, proc.stderr
    assert (workdir / "hello.txt").read_text() == "hi\n"

    assert lines[0]["type"] == "system" and lines[0]["subtype"] == "init"
    assert lines[0]["cwd"] == str(workdir)
    result = result_line(lines)
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["result"] == final
    assert result["num_turns"] == 2
    assert result["total_cost_usd"] > 0
    session_id = result["session_id"]
    assert uuid.UUID(session_id)

    # The tool ran and its result went back to the model as the next turn's user message.
    tool_results = [
        block
        for line in lines
        if line["type"] == "user"
        for block in line["message"]["content"]
        if block.get("type") == "tool_result"
    ]
    assert len(tool_results) == 1 and not tool_results[0].get("is_error")

    reqs = model.requests_for(name)
    assert [r.turn for r in reqs] == [0, 1]
    assert {r.session_id for r in reqs} == {session_id}
    assert "Write" in reqs[0].tool_names
    assert "File created successfully" in reqs[1].last_user_text
    assert reqs[0].stream and reqs[0].model
    assert "[[scenario:" in reqs[0].last_user_text  # the prompt itself
    # Both assistant blocks of turn 0 came back as one assistant message.
    assistant = [m for m in reqs[1].messages if m["role"] == "assistant"]
    assert [b["type"] for b in assistant[0]["content"]] == ["text", "tool_use"]
    assert assistant[0]["content"][1]["id"].startswith("toolu_")


def test_tools_flag_restricts_the_offered_and_usable_tools(claude_bin, model, home, workdir):
    name = scenario_name("readonly")
    model.add_scenario(
        name,
        [
            [ToolUse("Bash", {"command": "touch made_by_bash", "description": "make a file"})],
            [ToolUse("Write", {"file_path": "made_by_write.txt", "content": "x"})],
            [ToolUse("Glob", {"pattern": "*.txt"})],
            Text("Only looked."),
        ],
    )
    (workdir / "seed.txt").write_text("seed\n")
    before = sorted(os.listdir(workdir))

    tools = "Read,Glob,Grep"
    proc, lines = run_cli(
        claude_bin,
        model,
        home,
        workdir,
        f"look around [[scenario:{name}]]",
        "--tools",
        tools,
        "--allowedTools",
        tools,
        "--permission-mode",
        "acceptEdits",  # would allow Write if Write were available at all
    )

    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(workdir)) == before
    assert result_line(lines)["result"] == "Only looked."

    reqs = model.requests_for(name)
    assert [r.turn for r in reqs] == [0, 1, 2, 3]
    for r in reqs:
        assert sorted(r.tool_names) == ["Glob", "Grep", "Read"]
    assert "No such tool available: Bash" in reqs[1].last_user_text
    assert "No such tool available: Write" in reqs[2].last_user_text
    assert "seed.txt" in reqs[3].last_user_text  # Glob did run
    refused = [
        block
        for line in lines
        if line["type"] == "user"
        for block in line["message"]["content"]
        if block.get("type") == "tool_result" and block.get("is_error")
    ]
    assert len(refused) == 2


def test_session_id_and_resume(claude_bin, model, home, workdir):
    name = scenario_name("resume")
    model.add_scenario(name, [Text("What is the answer?"), Text("Noted: 42")])
    session_id = str(uuid.uuid4())

    proc, lines = run_cli(claude_bin, model, home, workdir, f"ask me [[scenario:{name}]]", "--session-id", session_id)
    assert proc.returncode == 0, proc.stderr
    first = result_line(lines)
    assert first["session_id"] == session_id
    assert first["result"] == "What is the answer?"
    [req0] = model.requests_for(name)
    assert req0.session_id == session_id
    assert req0.headers["x-claude-code-session-id"] == session_id

    # The transcript lives under the config dir, keyed by the (encoded) cwd.
    transcripts = list(Path(home, ".claude", "projects").glob(f"*/{session_id}.jsonl"))
    assert len(transcripts) == 1

    proc, lines = run_cli(claude_bin, model, home, workdir, "the answer is 42", "--resume", session_id)
    assert proc.returncode == 0, proc.stderr
    second = result_line(lines)
    assert second["session_id"] == session_id
    assert second["result"] == "Noted: 42"

    req1 = model.requests_for(name)[-1]
    assert req1.turn == 1
    assert req1.session_id == session_id
    assert "the answer is 42" in req1.last_user_text
    assert f"[[scenario:{name}]]" in req1.all_text  # the first prompt is still there
    assert any(m["role"] == "assistant" and "What is the answer?" in json.dumps(m["content"]) for m in req1.messages)


def _start_reader(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            if line.strip():
                lines.put(json.loads(line))
        lines.put(None)  # EOF

    threading.Thread(target=read, daemon=True).start()
    return lines


def _next_line(lines: queue.Queue, timeout: float):
    return lines.get(timeout=timeout)


@pytest.mark.parametrize("ending", ["release", "kill"])
def test_stall_keeps_the_cli_silent(claude_bin, model, home, workdir, ending):
    name = scenario_name("stall")
    model.add_scenario(name, [Stall(120, then="awake again")])

    proc = subprocess.Popen(
        [claude_bin, "-p", f"wait [[scenario:{name}]]", "--output-format", "stream-json", "--verbose"],
        cwd=workdir,
        env=cli_env(model.base_url, home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _start_reader(proc)
        init = _next_line(lines, CLI_TIMEOUT)
        assert init["type"] == "system" and init["subtype"] == "init"
        model.wait_for(lambda r: r.scenario == name, timeout=CLI_TIMEOUT)

        # The stream is open (message_start sent) and nothing more comes: the CLI prints nothing.
        with pytest.raises(queue.Empty):
            _next_line(lines, 2.0)
        assert proc.poll() is None

        if ending == "release":
            model.release_stalls()
            rest = []
            while (line := _next_line(lines, CLI_TIMEOUT)) is not None:
                rest.append(line)
            assert proc.wait(timeout=CLI_TIMEOUT) == 0
            result = result_line(rest)
            assert result["result"] == "awake again"
            assert result["is_error"] is False
        else:  # what an idle watchdog does
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) != 0
            assert time.monotonic() - started < 15
            assert _next_line(lines, 5) is None  # no result line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_api_error_gives_an_error_result(claude_bin, model, home, workdir):
    name = scenario_name("fail")
    model.add_scenario(name, [Fail(500, retry=False)])

    proc, lines = run_cli(claude_bin, model, home, workdir, f"go [[scenario:{name}]]")

    assert proc.returncode == 1
    result = result_line(lines)
    assert result["is_error"] is True
    assert result["api_error_status"] == 500
    assert "API Error: 500" in result["result"]
    assert len(model.requests_for(name)) == 1  # x-should-retry: false -> no retry


def test_concurrent_clis_share_one_model(claude_bin, model, tmp_path):
    names = [scenario_name(f"par{i}") for i in range(3)]
    procs = []
    for i, name in enumerate(names):
        model.add_scenario(
            name,
            [[ToolUse("Write", {"file_path": "out.txt", "content": f"{name}\n"})], Text(f"wrote {name}")],
        )
        cwd = tmp_path / f"w{i}"
        cwd.mkdir()
        procs.append(
            (
                name,
                cwd,
                subprocess.Popen(
                    [
                        claude_bin,
                        "-p",
                        f"go [[scenario:{name}]]",
                        "--output-format",
                        "stream-json",
                        "--verbose",
                        "--permission-mode",
                        "acceptEdits",
                    ],
                    cwd=cwd,
                    env=cli_env(model.base_url, str(tmp_path / f"home{i}")),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    for name, cwd, proc in procs:
        out, err = proc.communicate(timeout=CLI_TIMEOUT)
        assert proc.returncode == 0, err
        result = result_line(parse_lines(out))
        assert result["result"] == f"wrote {name}"
        assert (cwd / "out.txt").read_text() == f"{name}\n"
        reqs = model.requests_for(name)
        assert [r.turn for r in reqs] == [0, 1]
        assert {r.session_id for r in reqs} == {result["session_id"]}


# --------------------------------------------------------------------------------------------------
# The server on its own (no CLI): shapes the CLI does not exercise every run


MESSAGES = "/v1/messages?beta=true"


def _body(prompt: str, *, stream: bool = False, history: list | None = None, **extra) -> dict:
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}] + (history or [])
    return {"model": "claude-test-1", "max_tokens": 100, "stream": stream, "messages": messages, **extra}


def _sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_server_non_streaming_and_streaming_shapes():
    with ScriptedModel() as m:
        m.add_scenario("s", [[Text("hi"), ToolUse("Read", {"file_path": "a"})], Text("bye")])
        with httpx.Client(base_url=m.base_url) as c:
            r = c.post(MESSAGES, json=_body("[[scenario:s]]"), headers={"X-Claude-Code-Session-Id": "abc"})
            assert r.status_code == 200
            msg = r.json()
            assert msg["model"] == "claude-test-1"
            assert msg["stop_reason"] == "tool_use"
            assert [b["type"] for b in msg["content"]] == ["text", "tool_use"]
            assert msg["usage"]["input_tokens"] > 0 and msg["usage"]["output_tokens"] > 0

            r2 = c.post(MESSAGES, json=_body("[[scenario:s]]"))
            assert r2.json()["content"][1]["id"] != msg["content"][1]["id"]  # fresh tool_use ids

            history = [
                {"role": "assistant", "content": msg["content"]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "A"}]}
                    ],
                },
            ]
            r = c.post(MESSAGES, json=_body("[[scenario:s]]", stream=True, history=history))
            assert r.headers["content-type"].startswith("text/event-stream")
            events = _sse_events(r.text)
            kinds = [e for e, _ in events]
            assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
            assert events[0][1]["message"]["model"] == "claude-test-1"
            delta = next(d for e, d in events if e == "message_delta")
            assert delta["delta"]["stop_reason"] == "end_turn"
            assert delta["usage"]["output_tokens"] > 0
            text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
            assert text == "bye"

            r = c.post(MESSAGES, json=_body("[[scenario:s]]", stream=True, history=history * 2))
            assert END_OF_SCRIPT in r.text

        reqs = m.requests_for("s")
        assert [r.turn for r in reqs] == [0, 0, 1, 2]
        assert reqs[0].session_id == "abc"
        assert reqs[2].last_user_text == "A"


def test_server_tool_use_streams_as_input_json_delta():
    with ScriptedModel() as m:
        m.add_scenario("t", [ToolUse("Bash", {"command": "ls"})])
        r = httpx.post(m.base_url + MESSAGES, json=_body("[[scenario:t]]", stream=True))
        events = _sse_events(r.text)
        start = next(d for e, d in events if e == "content_block_start")
        assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "Bash"
        delta = next(d for e, d in events if e == "content_block_delta")["delta"]
        assert delta["type"] == "input_json_delta" and json.loads(delta["partial_json"]) == {"command": "ls"}
        assert next(d for e, d in events if e == "message_delta")["delta"]["stop_reason"] == "tool_use"


def test_server_side_requests_and_dynamic_turns():
    with ScriptedModel() as m:
        m.add_scenario("d", [lambda req: Text(f"you said: {req.last_user_text}")])
        with httpx.Client(base_url=m.base_url) as c:
            assert c.head("/").status_code == 200
            assert c.post("/v1/messages/count_tokens?beta=true", json=_body("hello")).json()["input_tokens"] > 0
            # Title generation quotes the prompt (and the marker) but is a side request.
            title = c.post(
                MESSAGES,
                json=_body(
                    "<session>\n[[scenario:d]]\n</session>",
                    system=[{"type": "text", "text": "Generate a concise, sentence-case title (3-7 words)"}],
                    output_config={
                        "format": {
                            "type": "json_schema",
                            "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
                        }
                    },
                ),
            ).json()
            assert set(json.loads(title["content"][0]["text"])) == {"title"}
            assert c.post(MESSAGES, json=_body("no marker")).json()["content"][0]["text"] == "(no scenario)"
            dyn = c.post(MESSAGES, json=_body("ping [[scenario:d]]")).json()
            assert dyn["content"][0]["text"] == "you said: ping [[scenario:d]]"
        kinds = [r.kind for r in m.requests]
        assert kinds == ["other", "count_tokens", "side", "main", "main"]
        assert [r.scenario for r in m.requests] == [None, None, None, None, "d"]
        assert len(m.requests_for("d")) == 1


def test_server_fail_turns():
    with ScriptedModel() as m:
        m.add_scenario("f", [Fail(529, retry=False)])
        m.add_scenario("once", [Fail(500, times=1, then=Text("recovered"))])
        m.add_scenario("raw", [Fail(503, body="upstream down")])
        with httpx.Client(base_url=m.base_url) as c:
            r = c.post(MESSAGES, json=_body("[[scenario:f]]"))
            assert r.status_code == 529
            assert r.headers["x-should-retry"] == "false"
            assert r.json()["error"]["type"] == "overloaded_error"
            assert c.post(MESSAGES, json=_body("[[scenario:once]]")).status_code == 500
            assert c.post(MESSAGES, json=_body("[[scenario:once]]")).json()["content"][0]["text"] == "recovered"
            r = c.post(MESSAGES, json=_body("[[scenario:raw]]"))
            assert (r.status_code, r.text) == (503, "upstream down")


def test_server_stall_non_streaming_is_released():
    with ScriptedModel() as m:
        m.add_scenario("s", [Stall(60, then="late")])
        out: dict = {}

        def call() -> None:
            out["r"] = httpx.post(m.base_url + MESSAGES, json=_body("[[scenario:s]]"), timeout=30)

        t = threading.Thread(target=call)
        t.start()
        m.wait_for(lambda r: r.scenario == "s", timeout=10)
        m.release_stalls()
        t.join(timeout=10)
        assert out["r"].json()["content"][0]["text"] == "late"


def test_cli_env_isolates_home_and_disables_traffic(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "real-token")
    monkeypatch.setenv("CLAUDE_CODE_USE_BEDROCK", "1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    env = cli_env("http://127.0.0.1:1", str(tmp_path / "h"))
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1"
    assert env["ANTHROPIC_API_KEY"]
    assert env["HOME"] == str(tmp_path / "h")
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "h" / ".claude")
    assert (tmp_path / "h" / ".claude").is_dir()
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["DISABLE_AUTOUPDATER"] == "1"
    for gone in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK", "HTTPS_PROXY"):
        assert gone not in env
    assert env["PATH"] == os.environ["PATH"]
