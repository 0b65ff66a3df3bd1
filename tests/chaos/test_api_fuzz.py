"""Schemathesis over `/openapi.json`: no 5xx, and no answer the document does not describe.

A real Factory (the real Temporal dev server, SQLite, embedded memory) behind a real uvicorn server;
schemathesis generates valid and invalid requests for every operation, with a fixed seed and a
bounded number of examples, and runs all its checks on each answer. The SSE stream never ends, so
it is read only up to its first bytes; webhooks are fuzzed unsigned and must refuse everything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from tests.fakes.http import free_port

pytestmark = pytest.mark.chaos

TOKEN = "fuzz-token-3b9e51d0c7"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEED = 20_261_201
# per operation and generation mode: about 1,000 requests in all (the time goes mostly to generating them)
EXAMPLES = 8
BUDGET_SECONDS = 180.0
STREAMS = {"GET /api/messages/stream/sse", "GET /api/events"}  # endless server-sent event streams

# Where a schema-valid body may still be refused with 422: it names a repo, an agent type or a
# workflow that config.yml does not know (a set no schema can carry). Everywhere else a valid
# request must be accepted (2xx) or meet a 404/409 of the current state.
NAMES_FROM_CONFIG = [
    "POST /api/tasks", "POST /api/workflows", "POST /api/workflows/code_review", "POST /api/handoffs",
    "POST /api/schedules",  # also a cron expression Temporal refuses
]  # fmt: skip
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-name": name,
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "409", "422"]}},
            }
            for name in NAMES_FROM_CONFIG
        ]
    }
)


def _stream_call(case: Any, url: str) -> None:
    """Call the endless SSE stream, keep its head and first bytes only, and validate that."""
    kwargs = case.as_transport_kwargs(base_url=url, headers=AUTH)
    with requests.request(**kwargs, stream=True, timeout=30) as resp:
        content = next(resp.iter_content(256), b"") if resp.status_code == 200 else resp.content
        cut = schemathesis.Response(
            status_code=resp.status_code,
            headers={k: [v] for k, v in resp.headers.items()},
            content=content,
            request=resp.request,
            elapsed=resp.elapsed.total_seconds(),
            message=resp.reason,
            encoding=resp.encoding,
            http_version="1.1",
            verify=True,
        )
    case.validate_response(cut, headers=AUTH, transport_kwargs={"base_url": url, "headers": AUTH})


def fuzz(url: str) -> tuple[list[str], int]:
    """Run every operation in both modes; the failures found and how many requests were made."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=CONFIG, timeout=30)
    deadline = time.monotonic() + BUDGET_SECONDS
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() > deadline:
                failures.append(f"{op.label} [{mode.value}]: not fuzzed, the time budget ran out")
                continue

            @hypothesis.seed(SEED)
            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported as is
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                if case.operation.label in STREAMS:
                    _stream_call(case, url)
                else:
                    case.call_and_validate(base_url=url, headers=AUTH, timeout=30)

            before = calls
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                if mode != GenerationMode.NEGATIVE:
                    raise
                # the operation takes no input at all: nothing invalid can be sent
            except (Exception, FailureGroup) as exc:  # keep going, so that one run shows every problem
                failures.append(f"{op.label} [{mode.value}]: {exc}")
            print(f"{op.label} [{mode.value}]: {calls - before} requests")
    return failures, calls


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(start_factory, github, monkeypatch):
    monkeypatch.setenv("FACTORY_AUTH_TOKEN", TOKEN)
    # a random owner/repo is looked up on the GitHub stand-in (refused fast), never on the internet
    async with start_factory(worker=False, memory={"enabled": True}, github={"web_url": github.url}) as h:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(h.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                assert not serving.done(), "uvicorn did not start"
                await asyncio.sleep(0.05)
            started = time.monotonic()
            # schemathesis is synchronous: in a thread, so the app keeps this event loop
            failures, calls = await asyncio.to_thread(fuzz, f"http://127.0.0.1:{port}")
            took = time.monotonic() - started
        finally:
            h.app.state.stopping = True  # ends open SSE streams
            server.should_exit = True
            await asyncio.wait_for(serving, 30)
    print(f"schemathesis: {calls} requests in {took:.0f}s")
    assert not failures, "\n\n".join(failures)
    assert calls > 900, f"only {calls} requests were made"
