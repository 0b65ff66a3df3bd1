"""An agent (the real CLI, scripted) uses the Docker toolkit from Bash inside a Factory task."""

from __future__ import annotations

import subprocess

import pytest

from factory.environments.compose import namespace
from tests.conftest import make_remote
from tests.fakes.anthropic import Text, ToolUse

pytestmark = pytest.mark.docker

COMPOSE = """services:
  web:
    image: {image}
    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    volumes:
      - ./www:/www:ro
"""


def _labelled(kind: str, task_id: int, ns: str) -> list[str]:
    """The deployment's objects of the task: other tests' Factories on this engine have their own task ids."""
    args = [
        "docker",
        kind,
        "ls",
        "-q",
        "--filter",
        f"label=factory.task={task_id}",
        "--filter",
        f"label=factory.deployment={ns}",
    ]
    if kind == "container":
        args.insert(3, "-a")
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout.split()


@pytest.fixture
def app_remote(tmp_path, busybox_image):
    return make_remote(
        tmp_path / "app.git",
        {"docker-compose.yml": COMPOSE.format(image=busybox_image), "www/index.html": "hello from the test env\n"},
    )


async def test_agent_spins_up_a_test_env_and_it_is_gone_when_the_task_ends(start_factory, model, app_remote):
    probe = (
        'python3 -c "from docker_toolkit import spin_up_test_env; import urllib.request; '
        "url = spin_up_test_env('docker-compose.yml', service_port=8080); "
        "print('URL', url); print('BODY', urllib.request.urlopen(url).read().decode())\""
    )
    model.add_scenario(
        "dockerenv", [[ToolUse("Bash", {"command": probe, "timeout": 180000})], Text("The app answers.")]
    )
    async with start_factory(repos={"demo": {"url": f"file://{app_remote}", "github": "acme/demo"}}) as h:
        t = await h.create("Try the app in Docker", "dockerenv")

        ns = namespace(h.cfg.temporal.id_prefix)

        def env_up():
            return _labelled("container", t["id"], ns)

        await h.until(env_up, timeout=120, what="the test environment to start")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=180)
        assert done["status"] == "done", done
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs", params={"limit": 500})).json()
        results = "\n".join(e["content"] for e in logs if e["kind"] == "tool_result")
        assert "BODY hello from the test env" in results
        await h.settled(t["id"], timeout=120)
        assert _labelled("container", t["id"], ns) == []
        assert _labelled("network", t["id"], ns) == []


async def test_the_agent_has_no_docker_socket_and_the_broker_refuses_unsafe_files(
    start_factory, model, app_remote, busybox_image
):
    """From its Bash the agent cannot use Docker itself; the broker refuses an unsafe file, naming the rule."""
    unsafe = "services:\n  root:\n    image: x\n    volumes: ['/:/host']\n    privileged: true\n"
    tries = (
        "docker ps; echo PS=$?; "
        f"docker run --rm -v /:/host {busybox_image} true; echo RUN=$?; "
        "ls -la /var/run/docker.sock /run/docker.sock 2>&1; "
        f'printf %s "{unsafe}" > unsafe.yml; '
        "python3 -c \"from docker_toolkit import spin_up_test_env; spin_up_test_env('unsafe.yml', service_port=80)\" "
        "2>&1 | tail -3"
    )
    model.add_scenario("nodocker", [[ToolUse("Bash", {"command": tries, "timeout": 120000})], Text("Tried.")])
    async with start_factory(repos={"demo": {"url": f"file://{app_remote}", "github": "acme/demo"}}) as h:
        t = await h.create("Try Docker directly", "nodocker")
        done = await h.wait_for(t["id"], {"done", "failed"}, timeout=180)
        assert done["status"] == "done", done
        logs = (await h.api.get(f"/api/tasks/{t['id']}/logs", params={"limit": 500})).json()
        out = "\n".join(e["content"] for e in logs if e["kind"] == "tool_result")
        assert "PS=0" not in out and "RUN=0" not in out, out[-3000:]
        assert "UnsafeComposeError" in out and "[privileged] service 'root'" in out, out[-3000:]
        assert "[bind mount outside worktree] service 'root'" in out, out[-3000:]
        assert _labelled("container", t["id"], namespace(h.cfg.temporal.id_prefix)) == []
