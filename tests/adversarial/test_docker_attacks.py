"""Attacks on the Docker environments' walls, each run for real against the broker and the Docker engine.

An agent holds no Docker socket; it hands the broker a compose file from its worktree, which it
can change at any moment. What must hold: compose runs only Factory's file, made from Factory's
one copy of what the agent's file names (`factory/environments/copy.py`, `spec.py`), binds
read-only, networks internal, every label Factory's. Images are the local `FROM scratch`
busybox (tests/docker_fixtures.py) or built on it.

The copy attacks (links out, devices, fifos, `.git`, a huge file) run the Factory side as root
and as an unprivileged user (`setpriv`), where reading files differs; the broker attacks run as
the tests do (the broker needs the Docker socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from factory.environments.docker import cleanup_task_environments, preview_url_of
from tests.adversarial.conftest import ROOT, _python_for_user, _test_user
from tests.test_environments import (  # noqa: F401  (fixtures)
    Broker,
    _cfg,
    _docker_json,
    _ids,
    _new_task_id,
    _toolkit,
    other_networks,
    previews_network,
    traefik,
)

pytestmark = [pytest.mark.adversarial, pytest.mark.docker]

SPIN = "from docker_toolkit import spin_up_test_env; print(spin_up_test_env({args}))"
HTTPD = '["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"]'


@pytest.fixture(scope="module")
def broker(docker_engine, tmp_path_factory, previews_network) -> Iterator[Broker]:  # noqa: F811
    b = Broker(_cfg(tmp_path_factory.mktemp("ws"), network=previews_network, max_copy_mb=5))
    yield b
    b.close()


@pytest.fixture
def task_id(docker_engine) -> Iterator[int]:
    tid = _new_task_id()
    yield tid
    asyncio.run(cleanup_task_environments(tid, ("test", "preview")))


def _spin(broker: Broker, task_id: int, wt: Path, args: str = "service_port=8080", ok: bool = True):
    return _toolkit(SPIN.format(args=args), broker.env(task_id, wt), wt, ok=ok)


def _containers(task_id: int) -> list[dict]:
    ids = _ids("container", task_id)
    return _docker_json("inspect", *ids) if ids else []


def _logs(task_id: int, service: str) -> str:
    for c in _containers(task_id):
        if c["Config"]["Labels"].get("com.docker.compose.service") == service:
            p = subprocess.run(["docker", "logs", c["Id"]], capture_output=True, text=True, timeout=30)
            return p.stdout + p.stderr
    return ""


# --- the link swap to / between two services ----------------------------------------------------


@pytest.mark.parametrize("kind", ["test", "preview"])
def test_a_first_service_cannot_turn_a_bind_source_into_a_link_to_root(broker, task_id, busybox_image, tmp_path, kind):
    wt = tmp_path / "wt"
    (wt / "data").mkdir(parents=True)
    marker = f"PWNED-{uuid.uuid4().hex}"
    (wt / "docker-compose.yml").write_text(
        "services:\n"
        "  swap:\n"
        f"    image: {busybox_image}\n"
        # the attack: replace the checked bind source with a link to the host's /
        "    command: ['/bin/sh', '-c', 'rm -rf /w/data; ln -s / /w/data; echo swap-done; exit 0']\n"
        "    volumes: ['./:/w']\n"
        "  web:\n"
        f"    image: {busybox_image}\n"
        f"    command: ['/bin/sh', '-c', 'echo x > /data/{marker}; echo wrote=$?; exec /bin/busybox httpd -f -p 8080 -h /']\n"
        "    volumes: ['./data:/data']\n"
        "    depends_on: {swap: {condition: service_completed_successfully}}\n"
    )
    if kind == "test":
        url = _spin(broker, task_id, wt, "service='web', service_port=8080").stdout.strip()
    else:  # a preview runs from Factory's snapshot, which no container of the project may write either
        code = "from docker_toolkit import spin_up_preview_env; print(spin_up_preview_env('docker-compose.yml', 'web', 8080))"
        url = _toolkit(code, broker.env(task_id, wt), wt).stdout.strip()
    assert url.startswith("http://")
    assert not Path("/", marker).exists(), "the second service wrote into the host's /"
    assert (wt / "data").is_dir() and not (wt / "data").is_symlink(), "a container changed the worktree"
    assert "wrote=0" not in _logs(task_id, "web")
    for c in _containers(task_id):
        for m in c["Mounts"]:
            if m["Type"] == "bind":  # every bind: Factory's copy, read-only
                assert m["RW"] is False and "/envs/factory-task-" in m["Source"], m


# --- a test environment writing the worktree's .git ----------------------------------------------


def test_a_container_cannot_rewrite_the_worktrees_git_config(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    subprocess.run(["git", "init", "-q", str(wt)], check=True)
    before = (wt / ".git" / "config").read_bytes()
    (wt / "docker-compose.yml").write_text(
        "services:\n"
        "  web:\n"
        f"    image: {busybox_image}\n"
        "    command: ['/bin/sh', '-c', 'ls -a /w; printf \"[filter \\\\\"x\\\\\"]\\\\n clean = touch /tmp/pwn\\\\n\" >> /w/.git/config;"
        " echo rc=$?; exec /bin/busybox httpd -f -p 8080 -h /']\n"
        "    volumes: ['./:/w']\n"
    )
    _spin(broker, task_id, wt)
    logs = _logs(task_id, "web")
    assert ".git" not in logs.split("rc=")[0], "the container sees the worktree's .git"
    assert (wt / ".git" / "config").read_bytes() == before
    # the agent's run ends: its test environments go before Factory finalizes the task
    broker.call(broker.broker.end_run(task_id))
    assert _ids("container", task_id) == []
    assert (wt / ".git" / "config").read_bytes() == before


def test_git_as_a_bind_source_is_refused(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    subprocess.run(["git", "init", "-q", str(wt)], check=True)
    (wt / "docker-compose.yml").write_text(
        f"services:\n  web:\n    image: {busybox_image}\n    volumes: ['./.git:/g']\n"
    )
    proc = _spin(broker, task_id, wt, ok=False)
    assert "[bind mount outside worktree] service 'web'" in proc.stderr and ".git" in proc.stderr
    assert _ids("container", task_id) == []


# --- the compose file swapped between the check and the run ---------------------------------------


def test_a_compose_file_swapped_while_factory_reads_it_never_reaches_compose(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    wt.mkdir()
    secret = f"s3cret-{uuid.uuid4().hex}"
    (tmp_path / "factory.env").write_text(f"GITHUB_TOKEN={secret}\n")
    good = f"services:\n  web:\n    image: {busybox_image}\n    command: {HTTPD}\n"
    bad = good + f"    env_file: {tmp_path / 'factory.env'}\n"
    (wt / "good").write_text(good)
    (wt / "bad").write_text(bad)
    (wt / "docker-compose.yml").write_text(good)
    # the agent's watcher, a process of its own as the agent's would be: flips the file as fast as it can
    flipper = (
        "import os, shutil, sys\n"
        "wt = sys.argv[1]\n"
        "i = 0\n"
        "while True:\n"
        "    shutil.copyfile(os.path.join(wt, 'bad' if i % 2 else 'good'), os.path.join(wt, '.swap'))\n"
        "    os.replace(os.path.join(wt, '.swap'), os.path.join(wt, 'docker-compose.yml'))\n"
        "    i += 1\n"
    )
    racer = subprocess.Popen([sys.executable, "-c", flipper, str(wt)])
    started = refused = 0
    try:
        for _ in range(3):
            proc = _spin(broker, task_id, wt, ok=False)
            if proc.returncode == 0:
                started += 1
                for c in _containers(task_id):
                    assert not any(secret in e for e in c["Config"]["Env"] or []), "Factory's .env reached a container"
            else:
                assert "[env_file outside worktree] service 'web'" in proc.stderr, proc.stderr[-2000:]
                refused += 1
    finally:
        racer.kill()
        racer.wait()
    # what compose ran is the copy of the bytes that were checked: Factory's file names no host path
    for env_dir in (Path(broker.broker.cfg.workspace_root) / "envs").glob(f"factory-task-{task_id}-test-*"):
        assert (env_dir / "compose.agent.yml").read_text() == good
        assert str(tmp_path / "factory.env") not in (env_dir / "docker-compose.factory.json").read_text()
    assert started + refused == 3


# --- compose's own settings from the worktree ------------------------------------------------------


def test_docker_host_in_the_worktrees_env_file_is_not_compose_s(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    wt.mkdir()
    evil = tmp_path / "evil.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(evil))
    server.listen(5)
    server.settimeout(0.2)
    (wt / ".env").write_text(f"DOCKER_HOST=unix://{evil}\nCOMPOSE_FILE=/etc/passwd\nTAG=from-dotenv\n")
    (wt / "docker-compose.yml").write_text(
        f"services:\n  web:\n    image: {busybox_image}\n    command: {HTTPD}\n"
        "    environment: {SEEN: '${TAG}', HOST_PATH: '${PATH:-unset}', LITERAL: '$$HOME'}\n"
    )
    _spin(broker, task_id, wt)
    with pytest.raises(TimeoutError):
        server.accept()  # Factory's compose never talked to the agent's daemon
    server.close()
    [c] = _containers(task_id)
    env = dict(e.split("=", 1) for e in c["Config"]["Env"])
    # variables come from the agent's .env as values only; Factory's own environment fills nothing
    assert (env["SEEN"], env["HOST_PATH"], env["LITERAL"]) == ("from-dotenv", "unset", "$HOME")


V2_KEYS = [
    ("    use_api_socket: true\n", "key not allowed: use_api_socket"),
    ("    provider: {type: model, options: {model: x}}\n", "key not allowed: provider"),
    ("    post_start: [{command: ['/bin/true']}]\n", "key not allowed: post_start"),
    ("    pre_stop: [{command: ['/bin/true']}]\n", "key not allowed: pre_stop"),
    ("    label_file: ./labels\n", "key not allowed: label_file"),
    ("    extends: {service: web}\n", "key not allowed: extends"),
    ("    frobnicate: 1\n", "key not allowed: frobnicate"),
    ("    build: {context: ., ssh: [default]}\n", "key not allowed: build.ssh"),
    ("    logging: {driver: syslog}\n", "key not allowed: logging"),
    ("    container_name: traefik\n", "key not allowed: container_name"),
    ("    extra_hosts: ['host:host-gateway']\n", "key not allowed: extra_hosts"),
    ("    sysctls: {net.ipv4.ip_forward: 1}\n", "key not allowed: sysctls"),
    ("include: [{path: other.yml, project_directory: /, env_file: /etc/shadow}]\n", "key not allowed: include"),
    ("secrets: {s: {environment: GITHUB_TOKEN}}\n", "key not allowed: secrets"),
]


@pytest.mark.parametrize(("snippet", "rule"), V2_KEYS, ids=[r for _s, r in V2_KEYS])
def test_keys_off_the_allow_list_are_refused_by_name(broker, task_id, busybox_image, tmp_path, snippet, rule):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "labels").write_text("traefik.enable=true\n")
    (wt / "other.yml").write_text(f"services:\n  x:\n    image: {busybox_image}\n")
    (wt / "docker-compose.yml").write_text(
        f"x-anchor: ignored\nservices:\n  web:\n    image: {busybox_image}\n" + snippet
    )
    proc = _spin(broker, task_id, wt, "service_port=80", ok=False)
    assert f"[{rule}]" in proc.stderr, proc.stderr[-2000:]
    assert _ids("container", task_id) == []


# --- image labels: another task's preview host, a URL of the image's choosing -----------------------


def test_an_image_label_cannot_route_another_tasks_host_or_pick_the_announced_url(
    broker,
    task_id,
    busybox_image,
    tmp_path,
    traefik,  # noqa: F811
    tmp_path_factory,
):
    victim = task_id + 1
    wt = tmp_path / "wt"
    (wt / "app").mkdir(parents=True)
    (wt / "app" / "index.html").write_text("attacker")
    (wt / "app" / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        "COPY index.html /www/index.html\n"
        f'LABEL traefik.enable="true" traefik.http.routers.evil.rule="Host(`task-{victim}.preview.test`)" '
        'traefik.http.routers.evil.service="evil" traefik.http.services.evil.loadbalancer.server.port="8080" '
        f'traefik.tcp.routers.grab.rule="HostSNI(`*`)" factory.url="https://evil.example" factory.task="{victim}"\n'
    )
    (wt / "docker-compose.yml").write_text(
        "services:\n  web:\n    build: ./app\n"
        "    image: " + busybox_image + "\n"  # retagging the shared base image: Factory names what it builds
        '    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    )
    base_id = _docker_json("image", "inspect", busybox_image)[0]["Id"]
    code = (
        "from docker_toolkit import spin_up_preview_env; print(spin_up_preview_env('docker-compose.yml', 'web', 8080))"
    )
    url = _toolkit(code, broker.env(task_id, wt), wt).stdout.strip()
    assert url == f"http://task-{task_id}.preview.test"
    assert _docker_json("image", "inspect", busybox_image)[0]["Id"] == base_id
    [c] = _containers(task_id)
    labels = c["Config"]["Labels"]
    assert labels["traefik.http.routers.evil.rule"] == f"Host(`task-{task_id}.preview.test`)"
    assert labels["traefik.tcp.routers.grab.rule"] == ""
    assert labels["factory.url"] == url and labels["factory.task"] == str(task_id)
    assert asyncio.run(preview_url_of(task_id)) == url and asyncio.run(preview_url_of(victim)) is None
    deadline = time.monotonic() + 20
    while httpx.get(traefik, headers={"Host": f"task-{task_id}.preview.test"}, timeout=5).status_code != 200:
        logs = list(tmp_path_factory.getbasetemp().rglob("traefik.log"))
        log = "".join(line for p in logs for line in p.read_text().splitlines(True) if "rror" in line)[-3000:]
        assert time.monotonic() < deadline, f"Traefik never routed the task's own host:\n{log}"
        time.sleep(0.3)
    assert httpx.get(traefik, headers={"Host": f"task-{victim}.preview.test"}, timeout=5).status_code == 404


# --- egress ---------------------------------------------------------------------------------------


def test_a_container_gets_no_answer_from_outside(broker, task_id, busybox_image, tmp_path):
    wt = tmp_path / "wt"
    wt.mkdir()
    # the probe's control: a listener of the host's on all addresses (the one thing that does answer here)
    control = socket.create_server(("0.0.0.0", 0))
    cport = control.getsockname()[1]

    def answer() -> None:
        with contextlib.suppress(OSError):  # the test closes the listener when it is done
            while True:
                c = control.accept()[0]
                c.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost")
                c.close()

    threading.Thread(target=answer, daemon=True).start()
    probe = "r=$$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port} 2>/dev/null); echo {name}=$${{#r}};"
    (wt / "docker-compose.yml").write_text(
        f"services:\n  web:\n    image: {busybox_image}\n"
        "    command: ['/bin/sh', '-c', \""
        + probe.format(ip="1.1.1.1", port=80, name="out")
        + probe.format(ip="$$(ip route | awk '/default/ {print $$3}')", port=cport, name="host")
        + ' exec /bin/busybox httpd -f -p 8080 -h /"]\n'
    )
    _spin(broker, task_id, wt)
    deadline = time.monotonic() + 20
    while "host=" not in (logs := _logs(task_id, "web")):
        assert time.monotonic() < deadline, logs
        time.sleep(0.3)
    control.close()
    assert "out=0" in logs, f"an outside address answered a container: {logs}"
    # what does not hold here (docs/sandbox.md): `internal: true` is enforced by Docker's iptables rules,
    # and this dockerd runs with --iptables=false, so the host's own listeners answer a container
    assert "host=0" not in logs, "the control got no answer: the probe proves nothing"
    nets = _docker_json("network", "inspect", *_ids("network", task_id))
    assert nets and all(n["Internal"] for n in nets)


# --- what Factory copies: the Factory side as root and as an unprivileged user --------------------

PREPARE = """
import json, sys
from pathlib import Path
from factory.environments.checks import UnsafeComposeError
from factory.environments.prepare import PrepareError, prepare
wt, root, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    env_dir, config = prepare(wt, "docker-compose.yml", "factory-task-1-test", Path(root), mb << 20)
    print(json.dumps({"ok": True, "env_dir": env_dir}))
except (UnsafeComposeError, PrepareError) as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""


def _prepare_as(who: str, tmp: Path, max_mb: int = 5) -> dict:
    """`prepare` (read once, check, copy) run by Factory as `who`."""
    root = tmp / "envs"
    prefix: list[str] = []
    if who == "user":
        uid, gid = _test_user()
        # os.walk, not rglob: a racing test renames entries as we go, and os.walk skips what vanished
        for p in [tmp, *(Path(d, n) for d, ds, fs in os.walk(tmp) for n in ds + fs)]:
            with contextlib.suppress(FileNotFoundError):
                if not p.is_symlink() and not p.is_char_device() and not p.is_block_device():
                    os.chown(p, uid, gid)
        prefix = [*_python_for_user(), "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    proc = subprocess.run(
        [*prefix, os.path.realpath(sys.executable), "-c", PREPARE, str(tmp / "wt"), str(root), str(max_mb)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's tmp_path sits under a 0700 root directory)."""
    if os.geteuid() != 0:
        pytest.skip("the harness runs as root (it makes the unprivileged user itself)")
    d = Path(tempfile.mkdtemp(prefix="factory-adv-docker-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _special(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))  # /dev/null's numbers, made by a container
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()


COPY_ATTACKS = [
    ("bind source links out", lambda wt: (wt / "www").symlink_to("/etc"), "volumes: ['./www:/www']", "outside"),
    ("link out inside a bind dir", lambda wt: ((wt / "www").mkdir(), (wt / "www" / "pw").symlink_to("/etc/passwd")),
     "volumes: ['./www:/www']", "www/pw is a link to /etc/passwd"),
    ("build context links out", lambda wt: (wt / "app").symlink_to("/etc"), "build: ./app", "outside"),
    ("env_file links out", lambda wt: (wt / "x.env").symlink_to("/etc/shadow"), "env_file: x.env", "outside"),
    ("fifo", lambda wt: ((wt / "www").mkdir(), _special("fifo", wt / "www" / "f")), "volumes: ['./www:/www']",
     "www/f is not a regular file"),
    ("device node", lambda wt: ((wt / "www").mkdir(), _special("device", wt / "www" / "null")),
     "volumes: ['./www:/www']", "www/null is not a regular file"),
    ("socket", lambda wt: ((wt / "www").mkdir(), _special("socket", wt / "www" / "s")), "volumes: ['./www:/www']",
     "www/s is not a regular file"),
    ("device as env_file", lambda wt: _special("device", wt / "d.env"), "env_file: d.env", "d.env is not a regular"),
    ("huge file", lambda wt: ((wt / "www").mkdir(), os.truncate(_touch(wt / "www" / "big"), 6 << 20)),
     "volumes: ['./www:/www']", "exceed the copy cap"),
    ("git dir", lambda wt: (wt / ".git").mkdir(), "volumes: ['./.git:/g']", "or in its .git"),
]  # fmt: skip


def _touch(p: Path) -> Path:
    p.touch()
    return p


@pytest.mark.parametrize("who", ["root", "user"])
@pytest.mark.parametrize(("name", "plant", "line", "error"), COPY_ATTACKS, ids=[a[0] for a in COPY_ATTACKS])
def test_factory_copies_only_regular_files_inside_the_worktree(work, who, name, plant, line, error):
    tmp_path = work
    wt = tmp_path / "wt"
    wt.mkdir()
    plant(wt)
    (wt / "docker-compose.yml").write_text(f"services:\n  web:\n    image: busybox\n    {line}\n")
    out = _prepare_as(who, tmp_path)
    assert out["ok"] is False and error in out["error"], out
    assert not any((tmp_path / "envs").glob("*")), "a refused copy was left behind"


@pytest.mark.parametrize("who", ["root", "user"])
def test_the_copy_keeps_links_inside_the_worktree_and_leaves_git_out(work, who):
    tmp_path = work
    wt = tmp_path / "wt"
    (wt / "www" / ".git").mkdir(parents=True)
    (wt / "www" / ".git" / "config").write_text("[core]\n")
    (wt / "www" / "index.html").write_text("hi")
    (wt / "www" / "alias.html").symlink_to("index.html")
    (wt / "docker-compose.yml").write_text("services:\n  web:\n    image: busybox\n    volumes: ['./www:/www']\n")
    out = _prepare_as(who, tmp_path)
    assert out["ok"], out
    copy = Path(out["env_dir"]) / "tree" / "www"
    assert (copy / "index.html").read_text() == "hi" and not (copy / ".git").exists()
    assert os.path.realpath(copy / "alias.html") == str(copy / "index.html")
    assert (copy / "index.html").stat().st_mode & 0o022 == 0  # writable by Factory alone
    shutil.rmtree(out["env_dir"])


@pytest.mark.parametrize("who", ["root", "user"])
def test_a_directory_swapped_for_a_link_while_factory_copies_it_is_never_followed(work, who):
    """The agent flips `www/sub` between a directory and a link to /etc while Factory copies `www`."""
    tmp_path = work
    wt = tmp_path / "wt"
    (wt / "www").mkdir(parents=True)
    for i in range(300):  # enough files that the copy takes a while
        (wt / "www" / f"f{i}").write_text("x" * 100)
    (wt / "docker-compose.yml").write_text("services:\n  web:\n    image: busybox\n    volumes: ['./www:/www']\n")
    real, link = wt / "www" / "sub", wt / "www" / "sub-link"
    real.mkdir()
    link.symlink_to("/etc")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(real, wt / "www" / "tmp")
            os.rename(link, real)
            os.rename(real, link)
            os.rename(wt / "www" / "tmp", real)

    results = []
    racer = threading.Thread(target=flip, daemon=True)
    racer.start()
    try:
        for _ in range(3):
            results.append(_prepare_as(who, tmp_path))
    finally:
        stop.set()
        racer.join(5)
    for out in results:
        if out["ok"]:
            copied = Path(out["env_dir"]) / "tree"
            assert not list(copied.rglob("passwd")), "Factory copied /etc through a swapped link"
            shutil.rmtree(out["env_dir"])
        else:
            assert any(w in out["error"] for w in ("link to /etc", "moved", "changed while", "cannot open")), out
