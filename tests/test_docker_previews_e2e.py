"""A preview started by an agent inside a Factory task: routed by Traefik, announced, removed when its PR closes."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from sqlmodel import select

from factory.environments.compose import namespace
from factory.environments.docker import cleanup_task_environments
from factory.store.tables import Message, session_scope
from tests.conftest import make_remote
from tests.fakes import github_webhooks as ghw
from tests.fakes.anthropic import Text, ToolUse
from tests.test_environments import other_networks, previews_network, traefik  # noqa: F401  (fixtures)
from tests.test_integrations import CHAT, GH_SECRET, post_github, tg_config

pytestmark = pytest.mark.docker
DOMAIN = "preview.test"

COMPOSE = """services:
  web:
    image: {image}
    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    volumes:
      - ./www:/www:ro
"""


def _containers(task_id: int, ns: str) -> list[str]:
    """The task's preview containers of deployment `ns` (other tests' Factories have a task 1 too)."""
    args = ["docker", "container", "ls", "-aq", "--filter", f"label=factory.task={task_id}"]
    args += ["--filter", "label=factory.kind=preview", "--filter", f"label=factory.deployment={ns}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout.split()


def _get(url: str, host: str) -> int:
    try:
        return httpx.get(url + "/index.html", headers={"Host": host}, timeout=5).status_code
    except httpx.HTTPError:
        return 0


async def test_preview_is_routed_announced_and_removed_when_its_pr_closes(
    start_factory,
    model,
    github,
    telegram,
    traefik,  # noqa: F811
    previews_network,  # noqa: F811
    busybox_image,
    tmp_path,
):
    remote = make_remote(
        tmp_path / "preview-app.git",
        {"docker-compose.yml": COMPOSE.format(image=busybox_image), "www/index.html": "the preview answers\n"},
    )
    spin = (
        'python3 -c "from docker_toolkit import spin_up_preview_env; '
        "print('PREVIEW', spin_up_preview_env('docker-compose.yml', 'web', 8080))\""
    )
    model.add_scenario(
        "preview",
        [
            [ToolUse("Bash", {"command": spin, "timeout": 180000})],
            [ToolUse("Write", {"file_path": "CHANGELOG.md", "content": "preview ready\n"})],
            Text("The preview is up."),
        ],
    )
    await _run(start_factory, model, github, telegram, traefik, previews_network, remote)


async def _run(start_factory, model, github, telegram, traefik, previews_network, remote):  # noqa: F811
    async with start_factory(
        repos={"demo": {"url": f"file://{remote}", "github": "acme/demo"}},
        previews={
            "domain": DOMAIN,
            "scheme": "http",
            "entrypoint": "web",
            "network": previews_network,
            "cert_resolver": "",
        },
        telegram=tg_config(telegram),
        github={"webhook_secret": GH_SECRET},
    ) as h:
        ns = namespace(h.cfg.temporal.id_prefix)
        try:
            await _check(h, github, telegram, traefik, ns)
        finally:  # a failed run must not leave its preview behind
            await cleanup_task_environments(1, ("test", "preview"), ns)


async def _check(h, github, telegram, traefik, ns: str) -> None:  # noqa: F811
    t = await h.create("Show the new page", "preview")
    done = await h.wait_for(t["id"], {"done", "failed"}, timeout=180)
    assert done["status"] == "done", done["error"]
    # the deployment's namespace is in the host: two Factories behind one Traefik both have a task 1
    url = f"http://{ns}-task-{t['id']}.{DOMAIN}"
    host = f"{ns}-task-{t['id']}.{DOMAIN}"
    logs = (await h.api.get(f"/api/tasks/{t['id']}/logs", params={"limit": 500})).json()
    results = "\n".join(e["content"] for e in logs if e["kind"] == "tool_result")
    assert f"PREVIEW {url}" in results, results[-3000:]
    assert done["preview_url"] == url
    # routed by Traefik by its host name (its docker provider reacts to events; slow on a busy machine)
    deadline = time.monotonic() + 90
    while _get(traefik, host) != 200:
        assert time.monotonic() < deadline, "the preview was not routed"
        time.sleep(0.2)
    assert httpx.get(traefik + "/index.html", headers={"Host": host}).text == "the preview answers\n"

    # announced: board, Telegram, PR body (the board's post runs beside the record that marks the task done, so
    # "done" may be read a moment before it lands)
    def board() -> list[str]:
        with session_scope(h.runtime.engine) as s:
            return [m.content for m in s.exec(select(Message).where(Message.task_id == t["id"]))]

    await h.until(lambda: f"Preview for Show the new page: {url}" in board(), timeout=30, what="the board's post")
    await h.until(lambda: any(url in x and "Preview for" in x for x in telegram.texts(CHAT)), what="telegram")
    pr = next(p for p in github.prs if p["head"]["ref"] == done["branch"])
    assert url in pr["body"]
    # the preview outlives its task (until the PR closes), content and all: it runs from Factory's
    # copy of the worktree, which the task's cleanup does not remove
    await h.settled(t["id"])
    assert _containers(t["id"], ns)
    assert httpx.get(traefik + "/index.html", headers={"Host": host}).text == "the preview answers\n"
    # a signed pull_request closed webhook removes it
    r = await post_github(h, "pull_request", ghw.pr_closed(ghw.from_fake(pr), merged=True))
    assert r.status_code in (200, 202), r.text
    await h.until(lambda: not _containers(t["id"], ns), timeout=60, what="the preview to be removed")
    deadline = time.monotonic() + 30
    while _get(traefik, host) != 404:
        assert time.monotonic() < deadline, "the route outlived the preview"
        time.sleep(0.2)
    assert (await h.task(t["id"]))["pr_state"] == "merged"
