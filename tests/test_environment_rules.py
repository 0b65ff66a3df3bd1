"""The broker's pure compose logic: the safety rules, the file Factory runs, the janitor's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.config import FactoryConfig
from factory.environments import docker as environments
from factory.environments.checks import (
    UnsafeComposeError,
    check_compose_safety,
    check_file_references,
)
from factory.environments.compose import (
    env_labels,
    finalize_config,
    namespace,
    parse_port,
    parse_project_name,
    pick_service,
    preview_host,
    preview_url,
    project_name,
    traefik_labels,
)
from factory.environments.docker import EnvironmentInfo, cleanup_task_environments, list_environments
from factory.environments.janitor import Janitor

P = "factory-task-7-test"


def _rules(service: dict, worktree: str = "/work/wt", **top) -> list[str]:
    return [v.rule for v in check_compose_safety({"services": {"app": service}, **top}, worktree, P)]


def test_safety_rules_over_a_parsed_config():
    assert _rules({"image": "x", "volumes": ["/work/wt/src:/src", "data:/data", "/anon"]}) == []
    assert _rules({"cap_add": ["NET_ADMIN", "CHOWN"], "security_opt": ["no-new-privileges:true"]}) == []
    two = {"services": {"app": {"network_mode": "service:db", "ipc": "shareable", "volumes_from": ["db:ro"]}, "db": {}}}
    assert check_compose_safety(two, "/work/wt", P) == []
    assert _rules({"privileged": True}) == ["privileged"]
    assert _rules({"network_mode": "host"}) == ["network_mode: host"]
    assert _rules({"network_mode": "container:abc"}) == ["network_mode: container"]
    assert _rules({"network_mode": "factory-previews"}) == ["network_mode"]
    assert _rules({"pid": "host"}) == ["pid: host"]
    assert _rules({"pid": "container:x"}) == ["pid: container"]
    assert _rules({"ipc": "host"}) == ["ipc: host"]
    assert _rules({"ipc": "container:x"}) == ["ipc: container"]
    assert _rules({"uts": "host"}) == ["uts: host"]
    assert _rules({"userns_mode": "host"}) == ["userns_mode: host"]
    assert _rules({"cgroup": "host"}) == ["cgroup: host"]
    assert _rules({"cgroup_parent": "/system.slice"}) == ["cgroup_parent"]
    assert _rules({"runtime": "runc-debug"}) == ["runtime"]
    assert _rules({"cap_add": ["NET_ADMIN", "CAP_SYS_ADMIN"]}) == ["cap_add"]
    assert _rules({"cap_add": ["all"]}) == ["cap_add"]
    assert _rules({"cap_add": ["SYS_MODULE", "DAC_READ_SEARCH"]}) == ["cap_add", "cap_add"]
    assert _rules({"security_opt": ["seccomp:unconfined"]}) == ["security_opt"]
    assert _rules({"security_opt": ["apparmor=unconfined"]}) == ["security_opt"]
    assert _rules({"devices": ["/dev/fuse:/dev/fuse"]}) == ["devices"]
    assert _rules({"device_cgroup_rules": ["c 1:3 mr"]}) == ["device_cgroup_rules"]
    assert _rules({"volumes_from": ["container:other"]}) == ["volumes_from"]
    assert _rules({"volumes_from": ["not-a-service:ro"]}) == ["volumes_from"]
    assert _rules({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}) == ["docker.sock"]
    assert _rules({"volumes": [{"type": "bind", "source": "/run/docker.sock", "target": "/d.sock"}]}) == ["docker.sock"]
    assert _rules({"volumes": [{"type": "bind", "source": "/etc", "target": "/etc2"}]}) == [
        "bind mount outside worktree"
    ]
    assert _rules({"volumes": ["/work/wt/../other:/x"]}) == ["bind mount outside worktree"]
    assert _rules({"volumes": ["/work/wt-other:/x"]}) == ["bind mount outside worktree"]
    assert _rules({"volumes": [{"type": "npipe", "source": "x", "target": "/x"}]}) == ["mount type"]


def test_safety_rules_for_volumes_networks_secrets_and_builds():
    bind_home = {"v": {"driver_opts": {"type": "none", "o": "bind", "device": "/home"}}}
    assert _rules({}, volumes=bind_home) == ["bind mount outside worktree"]
    assert _rules({}, volumes={"v": {"driver_opts": {"type": "none", "o": "bind", "device": "/work/wt/d"}}}) == []
    assert _rules({}, volumes={"v": {"driver_opts": {"type": "ext4", "device": "/dev/sda1"}}}) == ["volume driver_opts"]
    assert _rules({}, volumes={"v": {"external": True}}) == ["external volume"]
    assert _rules({}, volumes={"v": {"driver": "rexray"}}) == ["volume driver"]
    assert _rules({}, volumes={"v": {"name": "deploy_letsencrypt"}}) == ["volume name"]
    assert _rules({}, volumes={"v": {"name": f"{P}_v"}}) == []
    assert _rules({}, networks={"n": {"external": True, "name": "factory-task-5-test_default"}}) == ["external network"]
    assert _rules({}, networks={"n": {"name": "factory-previews"}}) == ["network name"]
    assert _rules({}, networks={"n": {"driver": "macvlan"}}) == ["network driver"]
    assert _rules({}, secrets={"s": {"file": "/etc/shadow"}}) == ["bind mount outside worktree"]
    assert _rules({}, configs={"c": {"file": "/work/wt/c.conf"}}) == []
    assert _rules({"build": {"context": "/work/wt/app"}}) == []
    assert _rules({"build": "/work"}) == ["build context outside worktree"]
    assert _rules({"build": {"context": "https://github.com/acme/x.git"}}) == ["build context outside worktree"]
    assert _rules({"build": {"context": "/work/wt", "dockerfile": "../../etc/Dockerfile"}}) == [
        "build context outside worktree"
    ]
    assert _rules({"build": {"context": "/work/wt", "additional_contexts": {"x": "/root"}}}) == [
        "build context outside worktree"
    ]
    assert _rules({"build": {"context": "/work/wt", "network": "host"}}) == ["build network: host"]
    assert _rules({"build": {"context": "/work/wt", "ssh": ["default"]}}) == ["build ssh"]
    err = UnsafeComposeError(check_compose_safety({"services": {"api": {"privileged": True}}}, "/w", P))
    assert "[privileged] service 'api'" in str(err)


def test_file_references_are_checked_before_compose_reads_them(tmp_path: Path):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "ok.env").write_text("A=1\n")
    (wt / "base.yml").write_text("services:\n  base:\n    image: x\n    env_file: /etc/passwd\n")
    (wt / "docker-compose.yml").write_text(
        "include: [../other/compose.yml]\n"
        "services:\n"
        "  web:\n    image: x\n    env_file: [ok.env, ../secrets.env]\n"
        "  db:\n    extends: {file: /srv/compose.yml, service: db}\n"
        "  cache:\n    extends: {file: base.yml, service: base}\n"
        "  sneaky:\n    image: x\n    env_file: ${HOME}/.env\n"
    )
    found = {(v.rule, v.service) for v in check_file_references(str(wt / "docker-compose.yml"), str(wt))}
    assert found == {
        ("include outside worktree", "include"),
        ("env_file outside worktree", "web"),
        ("extends outside worktree", "db"),
        ("env_file outside worktree", "base"),  # found by following cache's extends
        ("interpolated path", "sneaky"),
    }
    (wt / "link.env").symlink_to("/etc/hostname")
    (wt / "c2.yml").write_text("services:\n  web:\n    image: x\n    env_file: link.env\n")
    assert [v.rule for v in check_file_references(str(wt / "c2.yml"), str(wt))] == ["env_file outside worktree"]


def test_the_file_factory_runs_labels_limits_and_routes():
    labels = {"factory.task": "7", "factory.kind": "preview", "factory.repo": "a/b", "factory.created": "1"}
    config = {
        "name": "theirs",
        "version": "3.9",
        "services": {
            "web": {
                "image": "x",
                "ports": [{"target": 3000}, "0.0.0.0:8081:81", "9000-9001:9000-9001/udp"],
                "networks": {"front": None},
                "labels": {"traefik.http.routers.evil.rule": "Host(`x`)", "factory.url": "http://evil", "mine": "1"},
                "pids_limit": -1,
            },
            "db": {
                "image": "y", "mem_limit": "64m", "pids_limit": 50,
                "deploy": {"resources": {"limits": {"cpus": "0.5"}}},
            },
        },
        "networks": {"front": {"driver": "bridge"}},
        "volumes": {"data": {}},
    }  # fmt: skip
    preview = {
        "service": "web", "port": 3000, "host": "task-7.p.example.com", "network": "factory-previews",
        "entrypoint": "websecure", "cert_resolver": "le", "domain": "p.example.com",
        "url": "https://task-7.p.example.com",
    }  # fmt: skip
    out = finalize_config(config, labels=labels, memory="512m", cpus=1.0, preview=preview)
    assert out["version"] == "3.9" and "name" not in out
    web, db = out["services"]["web"], out["services"]["db"]
    assert web["mem_limit"] == "512m" and web["cpus"] == 1.0 and web["pids_limit"] == 512
    assert "cpus" not in db and db["mem_limit"] == "64m" and db["pids_limit"] == 50  # the file's own limits
    assert web["ports"] == ["127.0.0.1::3000/tcp", "127.0.0.1:8081:81/tcp", "127.0.0.1:9000-9001:9000-9001/udp"]
    assert web["networks"] == {"front": None, "factory-previews": None}
    assert "traefik.http.routers.evil.rule" not in web["labels"] and web["labels"]["mine"] == "1"
    assert web["labels"]["factory.url"] == "https://task-7.p.example.com"
    assert web["labels"]["traefik.docker.network"] == "factory-previews"
    assert web["labels"]["traefik.http.routers.factory-task-7.rule"] == "Host(`task-7.p.example.com`)"
    assert web["labels"]["traefik.http.routers.factory-task-7.tls.certresolver"] == "le"
    assert web["labels"]["traefik.http.services.factory-task-7.loadbalancer.server.port"] == "3000"
    assert "traefik.enable" not in db["labels"] and db["labels"]["factory.task"] == "7"
    assert out["networks"]["front"] == {"driver": "bridge", "labels": labels}
    assert out["networks"]["default"] == {"labels": labels}  # db is on the default network
    assert out["networks"]["factory-previews"] == {"external": True, "name": "factory-previews"}
    assert out["volumes"]["data"] == {"labels": labels}
    test = finalize_config(
        {"services": {"web": {"image": "x"}}}, labels={}, memory=None, cpus=None, publish=("web", 80)
    )
    assert test["services"]["web"]["ports"] == ["127.0.0.1::80/tcp"]
    assert "tls" not in " ".join(traefik_labels(service="w", port=1, host="h.d", network="n", entrypoint="web"))


def test_ports_and_pick_service():
    assert parse_port("8080") == ("", "8080", "tcp")
    assert parse_port("[::1]:80:8080/udp") == ("80", "8080", "udp")
    assert parse_port({"target": 1, "published": 2}) == ("2", "1", "tcp")
    config = {"services": {"db": {"ports": ["5432"]}, "web": {"ports": ["127.0.0.1:8081:3000/tcp"]}}}
    assert pick_service(config, None, None) == ("db", 5432, True)
    assert pick_service(config, None, 3000) == ("web", 3000, True)
    assert pick_service(config, "web", 9000) == ("web", 9000, False)
    with pytest.raises(ValueError, match="pass service="):
        pick_service(config, None, 9000)
    assert pick_service({"services": {"only": {}}}, None, 80) == ("only", 80, False)
    v2 = {"services": {"web": {"ports": [{"mode": "ingress", "target": 8080, "protocol": "tcp"}]}}}
    assert pick_service(v2, None, None) == ("web", 8080, True)


def _cfg(**previews) -> FactoryConfig:
    return FactoryConfig(previews={"domain": "preview.test", "scheme": "http", "entrypoint": "web", **previews})


async def test_janitor_rules():
    j = Janitor(_cfg(max_age_hours=1), lambda _tid: None, now=lambda: 10_000.0)
    test_env = EnvironmentInfo(name="factory-task-1-test", task_id=1, kind="test", created=9_000.0)
    preview = EnvironmentInfo(name="factory-task-1-preview", task_id=1, kind="preview", created=9_000.0)
    assert j.reason_to_remove(test_env, None) == "task is gone"
    assert j.reason_to_remove(test_env, ("failed", None)) == "task failed"
    assert j.reason_to_remove(test_env, ("in_progress", None)) is None
    assert j.reason_to_remove(test_env, ("awaiting_input", None)) is None
    assert j.reason_to_remove(preview, ("done", "open")) is None
    assert j.reason_to_remove(preview, ("done", "merged")) == "pull request merged"
    assert j.reason_to_remove(preview, ("done", "closed")) == "pull request closed"
    old = EnvironmentInfo(name="factory-task-2-preview", task_id=2, kind="preview", created=1_000.0)
    assert j.reason_to_remove(old, ("in_progress", "open")) == "older than 1h"


async def test_docker_missing_is_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI at all
    assert await list_environments() == []
    assert await environments.tear_down("factory-task-1-test") is False
    assert await cleanup_task_environments(1, ("test", "preview")) == 0
    assert await environments.preview_url_of(1) is None
    assert await Janitor(_cfg(), lambda _tid: None).run_once() == []


def test_names_carry_the_deployments_namespace():
    # the default namespace keeps the names environments already running carry
    assert namespace("") == ""
    assert project_name(7, "test") == "factory-task-7-test" and parse_project_name("factory-task-7-test") == (7, "test")
    assert preview_host(7, "p.example.com") == "task-7.p.example.com"
    # a test config's `<10 hex>-` prefix, and any other id_prefix, sanitized for Docker and DNS
    ns = namespace("3f2a9c01de-")
    assert ns == "3f2a9c01de"
    assert project_name(7, "preview", ns) == "factory-3f2a9c01de-task-7-preview"
    assert parse_project_name("factory-3f2a9c01de-task-7-preview", ns) == (7, "preview")
    assert preview_url(7, "p.example.com", "https", ns) == "https://3f2a9c01de-task-7.p.example.com"
    odd = [namespace(p) for p in ("Prod_EU.", "prod-eu-", "PROD/eu", "__", "x" * 80)]
    assert odd[1] == "prod-eu" and len(set(odd)) == len(odd)  # case and punctuation still tell them apart
    for n in odd:
        assert n and len(n) <= 32 and parse_project_name(project_name(1, "test", n), n) == (1, "test")
        assert len(preview_host(10**17, "d", n).split(".")[0]) <= 63
    # each deployment parses only its own names: a name from outside (the API) cannot reach another's
    assert parse_project_name("factory-3f2a9c01de-task-7-test") is None
    assert parse_project_name("factory-task-7-test", ns) is None
    assert parse_project_name("factory-other-task-7-test", ns) is None
    assert parse_project_name("factory-3f2a9c01de-task-7-test", "3f2a9c01") is None
    # the label is on everything Factory writes, and Traefik's router is the deployment's own
    assert (
        env_labels(7, "test", "r", 1, ns)["factory.deployment"] == ns
        and env_labels(7, "test", "r", 1)["factory.deployment"] == ""
    )
    labels = traefik_labels(service="w", port=1, host=preview_host(7, "d", ns), network="n", entrypoint="web")
    assert labels["traefik.http.routers.factory-3f2a9c01de-task-7.rule"] == "Host(`3f2a9c01de-task-7.d`)"
