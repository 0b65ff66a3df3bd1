"""Red team of the Docker environments' wall: compose files an agent writes, fed to Factory's real
`prepare` (the read, the allow-list and the copy every broker request goes through).

Each case is a compose feature that would run something of the agent's choosing on the host,
mount a host path, or reach a daemon or network of its choosing. The wall holds when Factory
refuses it naming the key or path, or when what it writes is harmless (checked below).
These need no engine: the refusal happens before compose is run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from factory.environments.checks import UnsafeComposeError
from factory.environments.prepare import PrepareError, prepare

pytestmark = [pytest.mark.adversarial, pytest.mark.docker]

_SVC = "services:\n  web:\n    image: busybox\n"

# (id, compose text, a word the refusal must name)
REFUSED = [
    (
        "build-additional-contexts",
        _SVC + "    build:\n      context: .\n      additional_contexts:\n        h: /\n",
        "build.additional_contexts",
    ),
    ("build-ssh", _SVC + "    build:\n      context: .\n      ssh: [default]\n", "build.ssh"),
    ("build-secrets", _SVC + "    build:\n      context: .\n      secrets: [s]\n", "build.secrets"),
    (
        "build-dockerfile-inline",
        _SVC + "    build:\n      dockerfile_inline: 'FROM scratch'\n",
        "build.dockerfile_inline",
    ),
    ("build-network-host", _SVC + "    build:\n      context: .\n      network: host\n", "build.network"),
    (
        "build-extra-hosts",
        _SVC + "    build:\n      context: .\n      extra_hosts: ['a:1.2.3.4']\n",
        "build.extra_hosts",
    ),
    ("build-privileged", _SVC + "    build:\n      context: .\n      privileged: true\n", "build.privileged"),
    ("build-context-git-url", _SVC + "    build: https://example.com/x.git\n", "build context"),
    ("build-context-parent", _SVC + "    build: ../\n", "build context"),
    ("build-dockerfile-abs", _SVC + "    build:\n      context: .\n      dockerfile: /etc/shadow\n", "build context"),
    ("cgroup-parent", _SVC + "    cgroup_parent: /\n", "cgroup_parent"),
    ("devices", _SVC + "    devices: ['/dev/sda']\n", "devices"),
    ("deploy-privileged", _SVC + "    deploy:\n      privileged: true\n", "deploy.privileged"),
    ("runtime", _SVC + "    runtime: runc\n", "runtime"),
    ("isolation", _SVC + "    isolation: default\n", "isolation"),
    ("extra-hosts", _SVC + "    extra_hosts: ['host.docker.internal:host-gateway']\n", "extra_hosts"),
    ("network-mode-host", _SVC + "    network_mode: host\n", "network_mode"),
    ("pid-host", _SVC + "    pid: host\n", "pid"),
    ("use-api-socket", _SVC + "    use_api_socket: true\n", "use_api_socket"),
    ("label-file", _SVC + "    label_file: ./labels\n", "label_file"),
    ("volume-bind-root", _SVC + "    volumes: ['/:/host']\n", "outside the worktree"),
    ("volume-bind-dotdot", _SVC + "    volumes: ['../../:/host']\n", "outside the worktree"),
    ("volume-bind-git", _SVC + "    volumes: ['./.git:/g']\n", ".git"),
    ("volume-docker-sock", _SVC + "    volumes: ['/var/run/docker.sock:/s']\n", "Docker socket"),
    (
        "volume-driver-opts-bind",
        _SVC + "volumes:\n  v:\n    driver_opts: {type: none, o: bind, device: /}\n",
        "driver_opts",
    ),
    ("volume-external", _SVC + "volumes:\n  v:\n    external: true\n", "external"),
    ("volume-other-name", _SVC + "volumes:\n  v:\n    name: other-task_data\n", "other-task_data"),
    ("network-external", _SVC + "networks:\n  n:\n    external: true\n", "external"),
    ("secret-environment", _SVC + "secrets:\n  s:\n    environment: ANTHROPIC_API_KEY\n", "secrets"),
    ("config-content", _SVC + "configs:\n  c:\n    content: x\n", "configs"),
    ("secret-file-abs", _SVC + "secrets:\n  s:\n    file: /root/.config/factory/config.yml\n", "outside the worktree"),
    (
        "env-file-abs",
        _SVC + "    env_file:\n      - path: /proc/self/environ\n        required: false\n",
        "outside the worktree",
    ),
    ("include", "include: [/etc/compose.yml]\n" + _SVC, "include"),
    ("extends-outside", _SVC + "    extends:\n      file: /etc/x.yml\n      service: a\n", "extends"),
    ("mount-type-npipe", _SVC + "    volumes:\n      - {type: npipe, source: x, target: /x}\n", "mount type"),
    ("env-var-path", _SVC + "    volumes: ['${HOME}/:/h']\n", "outside the worktree"),
]


def _prepare(tmp_path: Path, text: str, dotenv: str | None = None):
    wt = tmp_path / "wt"
    (wt / ".git").mkdir(parents=True)
    (wt / "Dockerfile").write_text("FROM scratch\n")
    (wt / "compose.yml").write_text(text)
    if dotenv is not None:
        (wt / ".env").write_text(dotenv)
    return prepare(str(wt), "compose.yml", "task-1-test", tmp_path / "envs", 10 * 1024 * 1024)


@pytest.mark.parametrize("text,needle", [pytest.param(t, n, id=i) for i, t, n in REFUSED])
def test_compose_feature_reaching_the_host_is_refused_by_name(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(UnsafeComposeError) as exc:
        _prepare(tmp_path, text)
    assert needle in str(exc.value), str(exc.value)
    assert not any((tmp_path / "envs").iterdir()), "a refused environment left its copy behind"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: &a [*a]\n", id="recursive-anchor"),
        pytest.param("x: !!python/object/apply:os.system ['touch /tmp/rt/pwned']\n" + _SVC, id="python-tag"),
        pytest.param(
            "a: &a ['x','x','x','x','x','x','x','x']\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d]\nservices: {web: {image: busybox, command: *e}}\n",
            id="billion-laughs",
        ),
    ],
)
def test_hostile_yaml_is_refused_or_inert(tmp_path: Path, text: str) -> None:
    """Python tags never construct (safe_load); anchors expand to plain data or are refused."""
    try:
        _, config = _prepare(tmp_path, text)
    except (PrepareError, UnsafeComposeError, RecursionError):
        config = None
    assert not os.path.exists("/tmp/rt/pwned")
    if config is not None:  # what is written stays the allow-listed document
        assert set(config) <= {"services", "volumes", "networks", "secrets", "configs"}


def test_dotenv_cannot_reach_factory_environment_or_host_paths(tmp_path: Path, monkeypatch) -> None:
    """${VAR} is filled only from the worktree's .env; Factory's own env vars are never read."""
    monkeypatch.setenv("FACTORY_SECRET_PROBE", "s3cret-value")
    text = _SVC + "    environment:\n      A: ${FACTORY_SECRET_PROBE:-none}\n      B: $$HOME\n      C: ${X:?boom}\n"
    _, config = _prepare(tmp_path, text, dotenv="X=1\n")
    dumped = yaml.safe_dump(config)
    assert "s3cret-value" not in dumped
    env = config["services"]["web"]["environment"]
    assert env["A"] == "none"


def test_compose_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    wt.mkdir()
    os.mkfifo(wt / "fifo.yml")
    (wt / "dir.yml").mkdir()
    os.symlink("/etc/passwd", wt / "link.yml")
    for name in ("fifo.yml", "dir.yml", "link.yml", "/etc/passwd", "../x.yml", "a\x00b.yml"):
        with pytest.raises((PrepareError, ValueError)):
            prepare(str(wt), name, "task-1-test", tmp_path / "envs", 1 << 20)
