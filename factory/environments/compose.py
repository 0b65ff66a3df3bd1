"""Pure compose logic: names, labels, the service to reach, and the file Factory runs.

Nothing here runs a process. The broker passes in the parsed output of `<compose> config`
(already checked by `checks.check_compose_safety`) and gets back the complete file it
runs: the agent's file is never read again after the check, so it cannot be swapped
between the check and `up`.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from typing import Any

KINDS = ("test", "preview")

LABEL_TASK = "factory.task"
LABEL_KIND = "factory.kind"
LABEL_REPO = "factory.repo"
LABEL_CREATED = "factory.created"
LABEL_DEPLOYMENT = "factory.deployment"
"""The deployment's namespace (`namespace(temporal.id_prefix)`, "" by default) on everything Factory starts."""
LABEL_URL = "factory.url"
"""Set by Factory on a preview's routed container: the public URL it announces."""

LABEL_SNAPSHOT = "factory.snapshot"
"""Set by Factory on a preview's containers: the copy of the worktree it runs from."""

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"

# labels an agent may not set: Factory writes routing and bookkeeping itself
_RESERVED_LABEL_PREFIXES = ("traefik.", "factory.", "com.docker.compose.")

DEFAULT_PIDS_LIMIT = 512
"""Processes per container when the file sets no (or no finite) limit: a fork bomb stays inside."""

PROJECT_RE = re.compile(r"^factory-(?:(?P<ns>[a-z0-9]+(?:-[a-z0-9]+)*)-)?task-(?P<task>[0-9]+)-(?P<kind>test|preview)$")

_NS_PLAIN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*-?$")
_NS_MAX = 32  # a preview's host label `<ns>-task-<id>` stays within DNS's 63 characters


def namespace(id_prefix: str) -> str:
    """The deployment's namespace for Docker names and labels, from its `temporal.id_prefix`.

    "" stays "" (today's names); a prefix of `[a-z0-9-]` loses its trailing `-` (`3f2a9c01de-` ->
    `3f2a9c01de`); any other prefix is lowercased to `[a-z0-9-]` plus 8 hex of its hash, so two
    prefixes that differ only in case or punctuation still name different namespaces.
    """
    if not id_prefix:
        return ""
    if _NS_PLAIN.match(id_prefix) and len(id_prefix) <= _NS_MAX:
        return id_prefix.rstrip("-")
    base = re.sub(r"[^a-z0-9]+", "-", id_prefix.lower()).strip("-")[:20].strip("-")
    digest = hashlib.sha256(id_prefix.encode()).hexdigest()[:8]
    return f"{base}-{digest}" if base else digest


def project_name(task_id: int | str, kind: str, ns: str = "") -> str:
    """`factory-task-<id>-<kind>` (`factory-<ns>-task-<id>-<kind>` in namespace `ns`), one environment's project."""
    if kind not in KINDS:
        raise ValueError(f"unknown environment kind {kind!r} (known: {', '.join(KINDS)})")
    return f"factory-{ns + '-' if ns else ''}task-{int(task_id)}-{kind}"


def parse_project_name(name: str, ns: str = "") -> tuple[int, str] | None:
    """(task_id, kind) of a project name of namespace `ns`; None when it is not one, or another deployment's."""
    m = PROJECT_RE.match(name)
    return (int(m["task"]), m["kind"]) if m and (m["ns"] or "") == ns else None


def preview_host(task_id: int | str, domain: str, ns: str = "") -> str:
    """`task-<id>.<domain>` (`<ns>-task-<id>.<domain>` in namespace `ns`): the host Traefik routes to a preview.

    Two deployments behind one Traefik with the same `previews.domain` would otherwise route the
    same host (and define the same router) for their task 1.
    """
    return f"{ns + '-' if ns else ''}task-{int(task_id)}.{domain}"


def preview_url(task_id: int | str, domain: str, scheme: str = "https", ns: str = "") -> str:
    """The public URL of a task's preview."""
    return f"{scheme}://{preview_host(task_id, domain, ns)}"


def env_labels(task_id: int | str, kind: str, repo: str, created: int | float, ns: str = "") -> dict[str, str]:
    """The labels every container, network and volume of an environment carries."""
    return {
        LABEL_DEPLOYMENT: ns,
        LABEL_TASK: str(int(task_id)),
        LABEL_KIND: kind,
        LABEL_REPO: repo,
        LABEL_CREATED: str(int(created)),
    }


def labels_dict(labels: Any) -> dict[str, str]:
    """Compose labels (mapping or `k=v` list) as a mapping."""
    if isinstance(labels, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in labels.items()}
    out: dict[str, str] = {}
    for item in labels or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _own_labels(labels: Any) -> dict[str, str]:
    return {k: v for k, v in labels_dict(labels).items() if not k.startswith(_RESERVED_LABEL_PREFIXES)}


# --- ports -----------------------------------------------------------------------------------


def parse_port(p: Any) -> tuple[str, str, str] | None:
    """(published, target, protocol) of one `ports` entry; published "" when Docker picks it.

    Ranges stay strings (`"8000-8002"`); a host IP in the entry is dropped (Factory binds 127.0.0.1).
    """
    if isinstance(p, Mapping):
        if p.get("target") is None:
            return None
        return str(p.get("published") or ""), str(p["target"]), str(p.get("protocol") or "tcp")
    spec, _, proto = str(p).partition("/")
    if spec.startswith("["):  # an IPv6 host address: [::1]:8080:80
        spec = spec.split("]:", 1)[-1]
    parts = spec.rsplit(":", 2) if spec.count(":") <= 2 else [spec]
    if len(parts) == 1:
        return "", parts[0], proto or "tcp"
    return parts[-2], parts[-1], proto or "tcp"


def _published_targets(svc: Mapping[str, Any]) -> list[int]:
    """Container ports the service publishes, in file order (a range counts by its first port)."""
    out: list[int] = []
    for p in svc.get("ports") or []:
        parsed = parse_port(p)
        if parsed is None:
            continue
        target = parsed[1].split("-", 1)[0]
        if target.isdigit():
            out.append(int(target))
    return out


def _loopback_ports(ports: Any) -> list[str]:
    """The service's ports, each bound to 127.0.0.1 whatever the file said."""
    out = []
    for p in ports or []:
        parsed = parse_port(p)
        if parsed is not None:
            published, target, proto = parsed
            out.append(f"127.0.0.1:{published}:{target}/{proto}")
    return out


def pick_service(config: Mapping[str, Any], service: str | None, port: int | None) -> tuple[str, int, bool]:
    """(service, container port, already published) to reach.

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


# --- the file Factory runs ---------------------------------------------------------------------


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


def finalize_config(
    config: Mapping[str, Any],
    *,
    labels: Mapping[str, str],
    memory: str | None,
    cpus: float | None,
    pids_limit: int = DEFAULT_PIDS_LIMIT,
    publish: tuple[str, int] | None = None,
    preview: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete compose mapping Factory runs for a checked `<compose> config`.

    Args:
        config: parsed `<compose> config` of the agent's file, already checked.
        labels: `env_labels(...)`, put on every service, image build, network and volume.
        memory: memory limit for services that set none (e.g. "512m"); None for no default.
        cpus: CPU limit for services that set none; None for no default.
        pids_limit: process limit for services that set none or an unlimited one.
        publish: (service, container port) to publish on 127.0.0.1 when the file does not.
        preview: for a preview, {"service", "port", "host", "network", "entrypoint",
            "cert_resolver", "url", "domain"}: Traefik labels on that service, which joins
            the shared previews network.

    Every published port is bound to 127.0.0.1; the agent's own `traefik.*`, `factory.*`
    and `com.docker.compose.*` labels are dropped.
    """
    out: dict[str, Any] = copy.deepcopy(dict(config))
    out.pop("name", None)  # the project name is Factory's (-p)
    labels = dict(labels)
    uses_default_network = False
    services: dict[str, Any] = out.get("services") or {}
    if preview and preview["service"] not in services:
        raise ValueError(f"no service {preview['service']!r} in the compose file")
    for name, svc in services.items():
        svc = services[name] = dict(svc or {})
        svc["labels"] = {**_own_labels(svc.get("labels")), **labels}
        if memory and not _has_memory_limit(svc):
            svc["mem_limit"] = memory
        if cpus and not _has_cpu_limit(svc):
            svc["cpus"] = float(cpus)
        if not isinstance(svc.get("pids_limit"), int) or not 0 < svc["pids_limit"] <= pids_limit:
            svc["pids_limit"] = pids_limit
        build = svc.get("build")
        if isinstance(build, Mapping):
            img_labels = {k: v for k, v in labels.items() if k != LABEL_CREATED}
            svc["build"] = {**dict(build), "labels": {**_own_labels(build.get("labels")), **img_labels}}
        elif isinstance(build, str):
            svc["build"] = {"context": build, "labels": {k: v for k, v in labels.items() if k != LABEL_CREATED}}
        ports = _loopback_ports(svc.get("ports"))
        if publish and publish[0] == name and int(publish[1]) not in _published_targets(svc):
            ports.append(f"127.0.0.1::{int(publish[1])}/tcp")
        if ports:
            svc["ports"] = ports
        else:
            svc.pop("ports", None)
        nets = _service_networks(svc)
        if nets is not None and "default" in nets:
            uses_default_network = True
        if preview and preview["service"] == name:
            if nets is None:
                raise ValueError(f"service {name!r} uses network_mode and cannot join the previews network")
            svc["networks"] = {**nets, preview["network"]: None}
            svc["labels"].update(traefik_labels(**preview))

    networks: dict[str, Any] = {}
    for name, net in (out.get("networks") or {}).items():
        net = dict(net or {})
        net["labels"] = {**labels_dict(net.get("labels")), **labels}
        networks[name] = net
    if uses_default_network and "default" not in networks:
        networks["default"] = {"labels": dict(labels)}
    if preview:
        networks[preview["network"]] = {"external": True, "name": preview["network"]}
    if networks:
        out["networks"] = networks
    volumes: dict[str, Any] = {}
    for name, vol in (out.get("volumes") or {}).items():
        vol = dict(vol or {})
        vol["labels"] = {**labels_dict(vol.get("labels")), **labels}
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
    """Labels that make Traefik's docker provider route `Host(host)` to service:port.

    `traefik.docker.network` names the previews network: the routed container sits on
    the project's own network too, and without the label Traefik takes whichever address
    it meets first, which it may not be able to reach.
    """
    del service
    router = "factory-" + host.split(".", 1)[0]  # [<ns>-]task-<id>: unique per deployment and task
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
