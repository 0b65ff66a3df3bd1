"""What an agent's compose file may ask for: Factory's checks, run before Factory runs it.

The broker no longer runs `<compose> config` on an agent's file: `spec.py` parses Factory's
one copy of it against an allow-list and rewrites every path onto Factory's copy. What
stays here is the second wall: `check_compose_safety` runs on the file Factory wrote,
with Factory's copy directory as the only allowed host path. (`check_file_references`
is kept for callers that check a file in place.)

Each refusal is a `Violation` naming the rule and the service.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

# the wire type of a refusal is the one the toolkit (standard library only, inside the sandbox) raises
from docker_toolkit import Violation

# Docker's default capabilities plus a few that act only inside the container's own namespaces
ALLOWED_CAPS = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
        "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
        "NET_ADMIN", "SYS_PTRACE", "IPC_LOCK", "SYS_NICE",
    }
)  # fmt: skip
_NAMESPACE_KEYS = ("network_mode", "pid", "ipc", "uts", "userns_mode", "cgroup", "cgroupns_mode")
_MAX_EXTENDS_DEPTH = 8


class UnsafeComposeError(Exception):
    """The compose file asks for something agents' environments may not have.

    Attributes:
        violations: every rule broken, as `Violation`s.
    """

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("refusing to start this compose file:\n  - " + "\n  - ".join(v.message for v in violations))




def is_within(path: str, root: str) -> bool:
    """Whether `path`, symlinks resolved, is `root` or below it."""
    path = os.path.realpath(path)
    root = os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# --- pass 1: the files the agent's YAML names ----------------------------------------------------


def _file_refs(doc: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(rule, service, path) of every file the raw compose document names."""
    for item in doc.get("include") or []:
        paths = item.get("path") if isinstance(item, Mapping) else item
        for p in [paths] if isinstance(paths, str) else paths or []:
            yield "include outside worktree", "include", str(p)
    for name, svc in (doc.get("services") or {}).items():
        if not isinstance(svc, Mapping):
            continue
        env_files = svc.get("env_file")
        for item in [env_files] if isinstance(env_files, str | Mapping) else env_files or []:
            p = item.get("path") if isinstance(item, Mapping) else item
            if p:
                yield "env_file outside worktree", str(name), str(p)
        ext = svc.get("extends")
        if isinstance(ext, Mapping) and ext.get("file"):
            yield "extends outside worktree", str(name), str(ext["file"])


def check_file_references(compose_file: str, worktree: str) -> list[Violation]:
    """Rules broken by the files a compose file (and what it extends) names, read before compose runs.

    Raises:
        ValueError: a file is not a YAML mapping or cannot be read.
    """
    out: list[Violation] = []
    seen: set[str] = set()
    todo = [(os.path.realpath(compose_file), 0)]
    while todo:
        path, depth = todo.pop()
        if path in seen or depth > _MAX_EXTENDS_DEPTH:
            continue
        seen.add(path)
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read {os.path.basename(path)}: {exc}") from exc
        if not isinstance(doc, Mapping):
            raise ValueError(f"{os.path.basename(path)} is not a compose file (no mapping at the top)")
        base = os.path.dirname(path)
        for rule, service, ref in _file_refs(doc):
            if "$" in ref:
                out.append(Violation("interpolated path", service, f"{ref}: file paths may not use variables"))
                continue
            full = os.path.join(base, os.path.expanduser(ref))
            if not is_within(full, worktree):
                out.append(Violation(rule, service, f"{ref} is outside the worktree {worktree}"))
            elif rule != "env_file outside worktree" and os.path.isfile(full):
                todo.append((os.path.realpath(full), depth + 1))
    return out


# --- pass 2: the resolved config ----------------------------------------------------------------


def _parse_short_volume(spec: str) -> tuple[str | None, str]:
    """(source, target) of `src:dst[:mode]` or `dst`; source None for an anonymous volume."""
    parts = spec.split(":")
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def _service_mounts(svc: Mapping[str, Any]) -> Iterable[tuple[str, str | None, str]]:
    """(type, source, target) of each of a service's mounts."""
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            src, dst = _parse_short_volume(vol)
            if src is None:
                yield "volume", None, dst
            else:
                yield ("bind" if src.startswith(("/", ".", "~")) else "volume"), src, dst
        elif isinstance(vol, Mapping):
            yield str(vol.get("type") or "volume"), vol.get("source"), str(vol.get("target") or "")


def _is_docker_socket(path: str | None) -> bool:
    return bool(path) and os.path.basename(str(path).rstrip("/")) in ("docker.sock", "docker.socket")


def _check_service(name: str, svc: Mapping[str, Any], services: Iterable[str], worktree: str) -> list[Violation]:
    out: list[Violation] = []

    def bad(rule: str, detail: str) -> None:
        out.append(Violation(rule, name, detail))

    if svc.get("privileged") in (True, "true", "True"):
        bad("privileged", "privileged: true gives the container the host's devices")
    for key in _NAMESPACE_KEYS:
        value = str(svc.get(key) or "")
        if value == "host":
            bad(f"{key}: host", f"{key}: host shares the host's namespace")
        elif value.startswith("container:"):
            bad(f"{key}: container", f"{key}: {value} joins a container outside this environment")
        elif key == "network_mode" and value and value not in ("none", "bridge") and not value.startswith("service:"):
            bad("network_mode", f"network_mode: {value} joins a network outside this environment")
    if svc.get("cgroup_parent"):
        bad("cgroup_parent", "cgroup_parent places the container in a cgroup of the host's choosing")
    if svc.get("runtime"):
        bad("runtime", f"runtime: {svc['runtime']} is not allowed (the engine's default runtime only)")
    caps = {re.sub(r"^CAP_", "", str(c).upper()) for c in svc.get("cap_add") or []}
    for cap in sorted(caps - ALLOWED_CAPS):
        bad("cap_add", f"cap_add: {cap} is not allowed (allowed: {', '.join(sorted(ALLOWED_CAPS))})")
    for opt in svc.get("security_opt") or []:
        if not str(opt).startswith("no-new-privileges"):
            bad("security_opt", f"security_opt: {opt} is not allowed (only no-new-privileges)")
    if svc.get("devices"):
        bad("devices", "devices: host devices may not be passed in")
    if svc.get("device_cgroup_rules"):
        bad("device_cgroup_rules", "device_cgroup_rules open host devices to the container")
    for ref in svc.get("volumes_from") or []:
        src = str(ref.get("source") if isinstance(ref, Mapping) else ref).split(":")
        target = src[1] if src[0] == "container" and len(src) > 1 else src[0]
        if src[0] == "container" or target not in services:
            bad("volumes_from", f"volumes_from: {':'.join(src)} is not a service of this file")
    for mtype, src, dst in _service_mounts(svc):
        if _is_docker_socket(src) or _is_docker_socket(dst):
            bad("docker.sock", f"mounting the Docker socket ({src or dst}) gives the host")
        elif mtype == "bind" and src and not is_within(os.path.expanduser(src), worktree):
            bad("bind mount outside worktree", f"bind mount of {src} is outside the worktree {worktree}")
        elif mtype not in ("bind", "volume", "tmpfs"):
            bad("mount type", f"mount type {mtype} is not allowed")
    out += _check_build(name, svc.get("build"), worktree)
    return out


def _check_build(name: str, build: Any, worktree: str) -> list[Violation]:
    if build is None:
        return []
    build = {"context": build} if isinstance(build, str) else dict(build)
    out: list[Violation] = []
    context = str(build.get("context") or ".")
    contexts = {"context": context}
    for k, v in (build.get("additional_contexts") or {}).items():
        contexts[f"additional_contexts.{k}"] = str(v)
    for key, ctx in contexts.items():
        if "://" in ctx or ctx.startswith(("git@", "docker-image:", "oci-layout:", "service:")):
            if not ctx.startswith("service:"):
                out.append(
                    Violation("build context outside worktree", name, f"build {key} {ctx} is not in the worktree")
                )
        elif not is_within(ctx, worktree):
            out.append(Violation("build context outside worktree", name, f"build {key} {ctx} is outside the worktree"))
    dockerfile = build.get("dockerfile")
    if dockerfile and not is_within(os.path.join(context, str(dockerfile)), worktree):
        out.append(
            Violation("build context outside worktree", name, f"dockerfile {dockerfile} is outside the worktree")
        )
    if str(build.get("network") or "") == "host":
        out.append(Violation("build network: host", name, "a build on the host's network reaches the host"))
    if build.get("ssh"):
        out.append(Violation("build ssh", name, "build ssh would hand the build the host's SSH agent or keys"))
    if build.get("privileged") or build.get("entitlements"):
        out.append(Violation("build privileged", name, "privileged builds are not allowed"))
    return out


def _check_top_level(config: Mapping[str, Any], worktree: str, project: str) -> list[Violation]:
    out: list[Violation] = []
    for vname, vol in (config.get("volumes") or {}).items():
        vol = vol or {}
        where = f"volume:{vname}"
        if vol.get("external"):
            out.append(Violation("external volume", where, "external volumes belong to someone else"))
            continue
        if vol.get("name") and not str(vol["name"]).startswith(f"{project}_"):
            out.append(Violation("volume name", where, f"name {vol['name']} is not this environment's ({project}_*)"))
        if (vol.get("driver") or "local") != "local":
            out.append(Violation("volume driver", where, f"driver {vol['driver']} is not allowed (local only)"))
        opts = vol.get("driver_opts") or {}
        device = opts.get("device")
        if device and "bind" in f"{opts.get('o', '')} {opts.get('type', '')}":
            if not is_within(str(device), worktree):
                rule = "docker.sock" if _is_docker_socket(device) else "bind mount outside worktree"
                out.append(Violation(rule, where, f"volume bound to {device}, outside the worktree {worktree}"))
        elif opts:
            out.append(
                Violation("volume driver_opts", where, "driver_opts may not mount devices or remote filesystems")
            )
    for nname, net in (config.get("networks") or {}).items():
        net = net or {}
        where = f"network:{nname}"
        if net.get("external"):
            out.append(Violation("external network", where, "external networks join other environments"))
        elif net.get("name") and not str(net["name"]).startswith(f"{project}_"):
            out.append(Violation("network name", where, f"name {net['name']} is not this environment's ({project}_*)"))
        elif (net.get("driver") or "bridge") not in ("bridge", "overlay"):
            out.append(Violation("network driver", where, f"driver {net['driver']} is not allowed"))
    for section in ("secrets", "configs"):
        for sname, item in (config.get(section) or {}).items():
            item = item or {}
            file = item.get("file")
            if file and not is_within(str(file), worktree):
                where = f"{section}:{sname}"
                out.append(Violation("bind mount outside worktree", where, f"file {file} is outside the worktree"))
            if item.get("external"):
                out.append(Violation(f"external {section}", f"{section}:{sname}", "external items are not allowed"))
    return out


def check_compose_safety(config: Mapping[str, Any], worktree: str, project: str = "") -> list[Violation]:
    """Every rule a parsed `<compose> config` breaks; empty when Factory may run it.

    Args:
        config: the resolved config (`<compose> config`), relative paths made absolute.
        worktree: the task's worktree: the only host directory an environment may see.
        project: the compose project (`factory-task-<id>-<kind>`): explicit volume and
            network names must be its own.
    """
    out: list[Violation] = []
    services: Mapping[str, Any] = config.get("services") or {}
    for name, svc in services.items():
        out += _check_service(str(name), svc or {}, services, worktree)
    out += _check_top_level(config, worktree, project or "factory-task")
    return out
