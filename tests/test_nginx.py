"""The shipped nginx site (deploy/nginx/factory.conf) in front of a real `factory api`: the task API,
the dashboard and a live message stream work through it, over TLS, and stream events arrive as they
are posted, not when a buffer fills."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import httpx
import pytest

from factory.cli import KEEP_ALIVE_SECONDS
from tests.conftest import write_config
from tests.fakes.http import free_port
from tests.procs import ROOT, ApiProcess

SITE = ROOT / "deploy" / "nginx" / "factory.conf"


def render_site(api_port: int, http_port: int, https_port: int, cert: Path, key: Path) -> str:
    """The shipped site with its upstream, ports and certificate pointed at this test's."""
    site = SITE.read_text()
    site = site.replace("server 127.0.0.1:8100;", f"server 127.0.0.1:{api_port};")
    site = re.sub(r"^\s*listen \[::\].*\n", "", site, flags=re.M)  # no IPv6 needed here
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", site)
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", site)
    assert str(api_port) in site and str(https_port) in site
    return site


@pytest.fixture
def nginx(tmp_path: Path, temporal_env, github, remote) -> Iterator[tuple[str, str, ApiProcess]]:
    """`factory api` behind nginx: (https URL, http URL, the API process)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.skip("nginx is not installed (apt-get install nginx)")
    address = temporal_env.client.service_client.config.target_host
    api = ApiProcess(write_config(tmp_path, remote, github.url, temporal={"address": address}), tmp_path / "api.log")
    api.start()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    cert, key = prefix / "cert.pem", prefix / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    http_port, https_port = free_port(), free_port()
    (prefix / "site.conf").write_text(render_site(api.port, http_port, https_port, cert, key))
    temp = "".join(
        f"{kind}_temp_path {prefix}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{temp}include {prefix}/site.conf;\n}}\n"
    )
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"https://127.0.0.1:{https_port}/health", verify=False, timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, (prefix / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", api
    finally:
        proc.terminate()
        proc.wait(10)
        api.stop()


def test_the_site_is_valid_for_debian_nginx(tmp_path: Path) -> None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.skip("nginx is not installed (apt-get install nginx)")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\ninclude {SITE};\n}}\n"
    )
    r = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    # as shipped it names certificates that only a real host has: everything else must parse
    assert r.returncode == 0 or "factory.example.com/fullchain.pem" in r.stderr, r.stderr


async def test_task_api_dashboard_and_live_stream_through_nginx(nginx) -> None:
    https, http, api = nginx
    # a keep-alive connection to the API itself, idle while the rest runs (checked at the end)
    direct = HTTPConnection("127.0.0.1", api.port, timeout=10)
    direct.request("GET", "/health")
    assert direct.getresponse().read() and direct.sock is not None
    held, idle_from = direct.sock, time.monotonic()
    async with httpx.AsyncClient(base_url=https, verify=False, timeout=30) as client:
        redirect = await client.get(f"{http}/api/tasks", follow_redirects=False)
        assert redirect.status_code == 301 and redirect.headers["location"].startswith("https://")
        created = await client.post("/api/tasks", json={"title": "Through nginx", "description": "x", "repo": "demo"})
        assert created.status_code == 201, created.text
        task = created.json()
        listed = await client.get("/api/tasks")
        assert task["id"] in [t["id"] for t in listed.json()]
        assert (await client.get(f"/api/tasks/{task['id']}")).json()["status"] == "queued"
        page = await client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]

        arrivals: list[tuple[float, dict]] = []
        opened = asyncio.Event()

        async def listen() -> None:
            async with client.stream("GET", "/api/messages/stream/sse", timeout=None) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                opened.set()
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        arrivals.append((time.monotonic(), json.loads(line[5:])))
                        if len(arrivals) == 2:
                            return

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(opened.wait(), 10)
        sent = []
        for text in ("first through nginx", "second through nginx"):
            sent.append(time.monotonic())
            r = await client.post("/api/messages", json={"sender": "tester", "content": text})
            assert r.status_code == 201, r.text
            await asyncio.sleep(1.5)  # a gap a buffering proxy would hold the first event across
        await asyncio.wait_for(listener, 10)
    assert [a[1]["content"] for a in arrivals] == ["first through nginx", "second through nginx"]
    for (arrived, _), posted in zip(arrivals, sent, strict=True):
        assert arrived - posted < 1.0, "an event was held back on its way through nginx"

    # The API keeps an idle connection open longer than nginx keeps its upstream ones (and than httpx's 5 s):
    # one it closed first could be closed just as nginx sends a request on it, a 502 for that request.
    # uvicorn's default closes them after 5 s; this connection has been idle longer than that.
    upstream = re.search(r"upstream factory_api \{[^}]*keepalive_timeout (\d+)s;", SITE.read_text())
    assert upstream and int(upstream.group(1)) < KEEP_ALIVE_SECONDS, "the site's upstream keep-alive outlives the API's"
    await asyncio.sleep(max(0.0, 5.5 - (time.monotonic() - idle_from)))
    direct.request("GET", "/health")
    assert direct.getresponse().status == 200 and direct.sock is held, "the API closed an idle connection"
    direct.close()
