"""Pure compose logic shared by the agents' toolkit and Factory's side.

Nothing here runs a process or reads the environment: the callers pass in the parsed
output of `<compose> config` and the task context, and get back violations, an
override mapping, names and labels. Standard library only, because agents import
this package with whatever `python3` is on their PATH.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("test", "preview")

LABEL_TASK = "factory.task"
LABEL_KIND = "factory.kind"
LABEL_REPO = "factory.repo"
LABEL_CREATED = "factory.created"
LABEL_URL = "factory.url"
"""Set on a preview's containers: the public URL Factory announces."""

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"

PROJECT_RE = re.compile(r"^factory-task-(?P<task>[0-9]+)-(?P<kind>test|preview)$")

_DANGEROUS_CAPS = {"SYS_ADMIN", "ALL"}
_HOST_NAMESPACES = ("network_mode", "pid")


class UnsafeComposeError(Exception):
    """The compose file asks for something agents' environments may not have.

    Attributes:
        violations: every rule broken, as `Violation`s.
    """

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        lines = [v.message for v in violations]
        super().__init__("refusing to start this compose file:\n  - " + "\n  - ".join(lines))


@dataclass(frozen=True)
class Violation:
    rule: str
    service: str
    detail: str

    @property
    def message(self) -> str:
        return f"[{self.rule}] service {self.service!r}: {self.detail}"


def project_name(task_id: int | str, kind: str) -> str:
    """`factory-task-<id>-<kind>`, the compose project of one environment."""
    if kind not in KINDS:
        raise ValueError(f"unknown environment kind {kind!r} (known: {', '.join(KINDS)})")
    return f"factory-task-{int(task_id)}-{kind}"


def parse_project_name(name: str) -> tuple[int, str] | None:
    """(task_id, kind) of a project name, or None when it is not one of Factory's."""
    m = PROJECT_RE.match(name)
    return (int(m["task"]), m["kind"]) if m else None


def preview_host(task_id: int | str, domain: str) -> str:
    return f"task-{int(task_id)}.{domain}"


def preview_url(task_id: int | str, domain: str, scheme: str = "https") -> str:
    return f"{scheme}://{preview_host(task_id, domain)}"


def env_labels(task_id: int | str, kind: str, repo: str, created: int | float) -> dict[str, str]:
    """The labels every container, network and volume of an environment carries."""
    return {
        LABEL_TASK: str(int(task_id)),
        LABEL_KIND: kind,
        LABEL_REPO: repo,
        LABEL_CREATED: str(int(created)),
    }


# --- compose command detection -------------------------------------------------------------

COMPOSE_CANDIDATES: tuple[tuple[str, ...], ...] = (("docker", "compose"), ("docker-compose",))


def choose_compose_command(works: Callable[[tuple[str, ...]], bool]) -> tuple[str, ...] | None:
    """The first compose command for which `works(cmd + ("version",))` holds.

    `docker compose` (the v2 plugin) is preferred; `docker-compose` (v1) is the fallback.
    """
    for cmd in COMPOSE_CANDIDATES:
        if works(cmd + ("version",)):
            return cmd
    return None


def is_compose_v1(cmd: Iterable[str]) -> bool:
    return tuple(cmd) == ("docker-compose",)


# --- safety --------------------------------------------------------------------------------


def _is_within(path: str, root: str) -> bool:
    path = os.path.realpath(path)
    root = os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _parse_short_volume(spec: str) -> tuple[str | None, str]:
    """(source, target) of `src:dst[:mode]` or `dst`; source None for an anonymous volume."""
    parts = spec.split(":")
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def _service_mounts(svc: Mapping[str, Any]) -> Iterable[tuple[str, str | None, str]]:
    """(type, source, target) of each of a service's mounts."""
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            src, dst = _parse_short_volume(vol)
            if src is None:
                yield "volume", None, dst
            else:
                yield ("bind" if _looks_like_path(src) else "volume"), src, dst
        elif isinstance(vol, Mapping):
            yield str(vol.get("type") or "volume"), vol.get("source"), str(vol.get("target") or "")


def _is_docker_socket(path: str | None) -> bool:
    return bool(path) and os.path.basename(str(path).rstrip("/")) in ("docker.sock", "docker.socket")


def check_compose_safety(config: Mapping[str, Any], worktree: str) -> list[Violation]:
    """Every rule a parsed `<compose> config` breaks; empty when it may run.

    These are guard rails, not a sandbox: an agent with Bash and a Docker socket can
    bypass them by calling docker itself. They stop the accidents that would hand an
    environment the host.
    """
    out: list[Violation] = []
    services: Mapping[str, Any] = config.get("services") or {}
    for name, svc in services.items():
        svc = svc or {}
        if svc.get("privileged") in (True, "true", "True"):
            out.append(Violation("privileged", name, "privileged: true gives the container the host's devices"))
        for key in _HOST_NAMESPACES:
            if str(svc.get(key) or "") == "host":
                out.append(Violation(f"{key}: host", name, f"{key}: host shares the host's namespace"))
        caps = {re.sub(r"^CAP_", "", str(c).upper()) for c in svc.get("cap_add") or []}
        for cap in sorted(caps & _DANGEROUS_CAPS):
            out.append(Violation("cap_add", name, f"cap_add: {cap} is not allowed"))
        if svc.get("devices"):
            out.append(Violation("devices", name, "devices: host devices may not be passed in"))
        for mtype, src, dst in _service_mounts(svc):
            if _is_docker_socket(src) or _is_docker_socket(dst):
                out.append(Violation("docker.sock", name, f"mounting the Docker socket ({src or dst}) gives the host"))
            elif mtype == "bind" and src and not _is_within(os.path.expanduser(src), worktree):
                out.append(
                    Violation(
                        "bind mount outside worktree", name, f"bind mount of {src} is outside the worktree {worktree}"
                    )
                )
    # named volumes backed by a host directory (local driver, o=bind) are bind mounts too
    for vname, vol in (config.get("volumes") or {}).items():
        opts = (vol or {}).get("driver_opts") or {}
        device = opts.get("device")
        if device and "bind" in str(opts.get("o", "")) and not _is_within(str(device), worktree):
            rule = "docker.sock" if _is_docker_socket(device) else "bind mount outside worktree"
            out.append(Violation(rule, f"volume:{vname}", f"volume bound to {device}, outside the worktree {worktree}"))
    for section in ("secrets", "configs"):
        for sname, item in (config.get(section) or {}).items():
            file = (item or {}).get("file")
            if file and not _is_within(str(file), worktree):
                out.append(
                    Violation(
                        "bind mount outside worktree",
                        f"{section}:{sname}",
                        f"file {file} is outside the worktree {worktree}",
                    )
                )
    return out


# --- override --------------------------------------------------------------------------------


def _labels_dict(labels: Any) -> dict[str, str]:
    if isinstance(labels, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in labels.items()}
    out: dict[str, str] = {}
    for item in labels or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _has_memory_limit(svc: Mapping[str, Any]) -> bool:
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    return bool(svc.get("mem_limit") or limits.get("memory"))


def _has_cpu_limit(svc: Mapping[str, Any]) -> bool:
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    return bool(svc.get("cpus") or svc.get("cpu_quota") or svc.get("cpu_count") or limits.get("cpus"))


def _service_networks(svc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The service's networks as a mapping; None when it uses `network_mode`."""
    if svc.get("network_mode"):
        return None
    nets = svc.get("networks")
    if not nets:
        return {"default": None}
    if isinstance(nets, Mapping):
        return dict(nets)
    return {str(n): None for n in nets}


def _published_targets(svc: Mapping[str, Any]) -> list[int]:
    """Container ports the service publishes, in file order."""
    out: list[int] = []
    for p in svc.get("ports") or []:
        if isinstance(p, Mapping):
            if p.get("target") is not None:
                out.append(int(p["target"]))
            continue
        spec = str(p).split("/", 1)[0]
        target = spec.rsplit(":", 1)[-1]
        if "-" in target:  # a range: take its first port
            target = target.split("-", 1)[0]
        if target.isdigit():
            out.append(int(target))
    return out


def pick_service(config: Mapping[str, Any], service: str | None, port: int | None) -> tuple[str, int, bool]:
    """(service, container port, already published) for a test environment.

    Raises:
        ValueError: when the choice is ambiguous or names something that is not there.
    """
    services: Mapping[str, Any] = config.get("services") or {}
    if not services:
        raise ValueError("the compose file defines no services")
    if service is not None:
        if service not in services:
            raise ValueError(f"no service {service!r} in the compose file (services: {', '.join(services)})")
        published = _published_targets(services[service] or {})
        if port is None:
            if not published:
                raise ValueError(f"service {service!r} publishes no port: say which port to reach")
            return service, published[0], True
        return service, int(port), int(port) in published
    for name, svc in services.items():
        published = _published_targets(svc or {})
        if port is None and published:
            return name, published[0], True
        if port is not None and int(port) in published:
            return name, int(port), True
    if port is None:
        raise ValueError("no service publishes a port: say which service and port to reach")
    if len(services) == 1:
        return next(iter(services)), int(port), False
    raise ValueError(f"no service publishes port {port}: pass service= to say which one should")


def build_override(
    config: Mapping[str, Any],
    *,
    labels: Mapping[str, str],
    memory: str | None,
    cpus: float | None,
    publish: tuple[str, int] | None = None,
    preview: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The override compose mapping that labels and limits an environment.

    Args:
        config: parsed `<compose> config` of the agent's file.
        labels: `env_labels(...)`, put on every service, image build, network and volume.
        memory: memory limit for services that set none (e.g. "512m"); None for no default.
        cpus: CPU limit for services that set none; None for no default.
        publish: (service, container port) to publish on 127.0.0.1 when the file does not.
        preview: for a preview, {"service", "port", "host", "network", "entrypoint",
            "cert_resolver", "url", "domain"}: Traefik labels on that service and the
            shared previews network attached to it.

    Written beside (not over) the agent's file: `-f theirs -f ours`. Entries are copied
    from the resolved config before labels are added, because compose v1 replaces some
    top-level definitions instead of merging them.
    """
    labels = dict(labels)
    out: dict[str, Any] = {}
    if config.get("version"):
        out["version"] = config["version"]  # compose v1 refuses to mix file versions
    services: dict[str, Any] = {}
    uses_default_network = False
    for name, svc in (config.get("services") or {}).items():
        svc = svc or {}
        entry: dict[str, Any] = {"labels": {**_labels_dict(svc.get("labels")), **labels}}
        if memory and not _has_memory_limit(svc):
            entry["mem_limit"] = memory
        if cpus and not _has_cpu_limit(svc):
            entry["cpus"] = float(cpus)
        build = svc.get("build")
        if isinstance(build, Mapping):
            img_labels = {k: v for k, v in labels.items() if k != LABEL_CREATED}
            entry["build"] = {
                **copy.deepcopy(dict(build)),
                "labels": {**_labels_dict(build.get("labels")), **img_labels},
            }
        nets = _service_networks(svc)
        if nets is not None and "default" in nets:
            uses_default_network = True
        if publish and publish[0] == name:
            entry["ports"] = [f"127.0.0.1::{int(publish[1])}"]
        if preview and preview["service"] == name:
            if nets is None:
                raise ValueError(f"service {name!r} uses network_mode and cannot join the previews network")
            entry["networks"] = {**nets, preview["network"]: None}
            entry["labels"].update(traefik_labels(**preview))
        services[name] = entry
    if preview and preview["service"] not in services:
        raise ValueError(f"no service {preview['service']!r} in the compose file")
    out["services"] = services

    networks: dict[str, Any] = {}
    for name, net in (config.get("networks") or {}).items():
        net = dict(net or {})
        if net.get("external"):
            continue
        net["labels"] = {**_labels_dict(net.get("labels")), **labels}
        networks[name] = net
    if uses_default_network and "default" not in networks:
        networks["default"] = {"labels": dict(labels)}
    if preview:
        networks[preview["network"]] = {"external": True}
    if networks:
        out["networks"] = networks

    volumes: dict[str, Any] = {}
    for name, vol in (config.get("volumes") or {}).items():
        vol = dict(vol or {})
        if vol.get("external"):
            continue
        vol["labels"] = {**_labels_dict(vol.get("labels")), **labels}
        volumes[name] = vol
    if volumes:
        out["volumes"] = volumes
    return out


def traefik_labels(
    *,
    service: str,
    port: int,
    host: str,
    network: str,
    entrypoint: str,
    cert_resolver: str = "",
    domain: str = "",
    url: str = "",
) -> dict[str, str]:
    """Labels that make Traefik's docker provider route `Host(host)` to service:port."""
    del service
    router = "factory-" + host.split(".", 1)[0]  # task-<id>: unique per task
    labels = {
        "traefik.enable": "true",
        "traefik.docker.network": network,
        f"traefik.http.routers.{router}.rule": f"Host(`{host}`)",
        f"traefik.http.routers.{router}.entrypoints": entrypoint,
        f"traefik.http.routers.{router}.service": router,
        f"traefik.http.services.{router}.loadbalancer.server.port": str(int(port)),
    }
    if cert_resolver:
        labels[f"traefik.http.routers.{router}.tls"] = "true"
        labels[f"traefik.http.routers.{router}.tls.certresolver"] = cert_resolver
        if domain:
            # ask for the wildcard, so every preview shares one certificate (DNS challenge)
            labels[f"traefik.http.routers.{router}.tls.domains[0].main"] = domain
            labels[f"traefik.http.routers.{router}.tls.domains[0].sans"] = f"*.{domain}"
    if url:
        labels[LABEL_URL] = url
    return labels
