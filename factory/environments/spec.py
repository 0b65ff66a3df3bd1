"""The part of the compose spec Factory runs: an allow-list, and the rewrite onto Factory's copy.

An agent's compose file is parsed here, once, from the bytes Factory copied. A key not
on the allow-list is refused with its name (a list of known-bad keys missed every key
compose added since: `include`, `use_api_socket`, `provider`, `post_start`, `label_file`).
Every path the file names is resolved against the worktree and handed to a `Copier`;
the file Factory then writes points only at the copy, binds read-only.

Variables (`${VAR}`, `${VAR:-default}`) are filled from the `.env` next to the compose
file, as plain values, never from Factory's environment; every `$` in the file Factory
writes is escaped, so compose interpolates nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from docker_toolkit import Violation
from factory.environments.copy import CopyRefused

TOP_KEYS = {"services", "networks", "volumes", "secrets", "configs", "name", "version"}
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose", "depends_on",
    "healthcheck", "working_dir", "user", "restart", "volumes", "tmpfs", "labels", "deploy", "mem_limit",
    "mem_reservation", "memswap_limit", "cpus", "pids_limit", "init", "stop_signal", "stop_grace_period",
    "read_only", "cap_drop", "networks", "hostname", "shm_size", "tty", "stdin_open", "secrets", "configs",
    "ulimits", "platform", "profiles",
}  # fmt: skip
BUILD_KEYS = {"context", "dockerfile", "args", "target", "labels"}
DEPLOY_KEYS = {"resources", "restart_policy", "replicas"}
# keys refused under the rule name the earlier checks used (tests and agents know these names)
_NAMED = {"privileged": "privileged", "cap_add": "cap_add", "security_opt": "security_opt", "devices": "devices",
          "volumes_from": "volumes_from", "cgroup_parent": "cgroup_parent", "device_cgroup_rules": "device_cgroup_rules"}  # fmt: skip
_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a `.env` (quotes stripped): values for interpolation, nothing else."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.removeprefix("export ").partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """`value` with `${VAR}` forms filled from `variables` and `$$` made `$`, recursively."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m["braced"] or m["bare"]
            val, op, arg = variables.get(name), m["op"] or "", m["arg"] or ""
            if op in (":-", ":?"):
                return val if val else (arg if op == ":-" else "")
            if op in ("-", "?"):
                return val if val is not None else (arg if op == "-" else "")
            if op in (":+", "+"):
                return arg if (val if op == ":+" else val is not None) else ""
            return val or ""

        return _VAR.sub(sub, value)
    if isinstance(value, Mapping):
        return {str(k): interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    return value


def escape_dollars(value: Any) -> Any:
    """Every `$` doubled, so compose reads the value as written."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, Mapping):
        return {k: escape_dollars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_dollars(v) for v in value]
    return value


class Rewriter:
    """Checks a parsed compose document against the allow-list and rewrites its paths onto a copy.

    Args:
        base: the compose file's directory (inside the worktree): relative paths start here.
        worktree: the only host directory an environment's files may come from.
        copy: `Copier.copy_path`-like: a real path inside the worktree -> its place in Factory's copy.
        project: the compose project; explicit volume names must be its own.
    """

    def __init__(self, base: str, worktree: str, copy: Callable[[str], str], project: str):
        self.base, self.worktree, self.copy, self.project = base, os.path.realpath(worktree), copy, project
        self.violations: list[Violation] = []

    def bad(self, rule: str, where: str, detail: str) -> None:
        self.violations.append(Violation(rule, where, detail))

    def _path(self, raw: Any, rule: str, where: str) -> str | None:
        """The copy of `raw` (relative to the compose file), or None after a refusal."""
        raw = str(raw)
        full = os.path.realpath(os.path.join(self.base, os.path.expanduser(raw)))
        if os.path.basename(raw.rstrip("/")) in ("docker.sock", "docker.socket"):
            self.bad("docker.sock", where, f"mounting the Docker socket ({raw}) gives the host")
            return None
        wt = self.worktree
        if not (full == wt or full.startswith(wt + os.sep)) or ".git" in os.path.relpath(full, wt).split(os.sep):
            self.bad(rule, where, f"{raw} is outside the worktree {wt} (or in its .git)")
            return None
        if not os.path.exists(full):
            self.bad("missing path", where, f"{raw} does not exist in the worktree")
            return None
        try:
            return self.copy(full)
        except CopyRefused as exc:
            self.bad("copy refused", where, str(exc))
            return None

    def document(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in doc.items():
            key = str(key)
            if key.startswith("x-") or key in ("name", "version"):
                continue
            if key not in TOP_KEYS:
                self.bad(f"key not allowed: {key}", "top level", f"{key} is not in the part of compose Factory runs")
                continue
            out[key] = value
        services = out.get("services")
        if not isinstance(services, Mapping) or not services:
            self.bad("no services", "top level", "the compose file defines no services")
            return out
        out["services"] = {str(n): self.service(str(n), s or {}, set(map(str, services))) for n, s in services.items()}
        out["volumes"] = self._volumes(out.get("volumes") or {})
        out["networks"] = self._networks(out.get("networks") or {})
        for section in ("secrets", "configs"):
            out[section] = self._files(section, out.get(section) or {})
        return {k: v for k, v in out.items() if v}

    def service(self, name: str, svc: Mapping[str, Any], services: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in svc.items():
            key = str(key)
            if key.startswith("x-"):
                continue
            if key in SERVICE_KEYS:
                out[key] = value
            elif key in _NAMED:
                self.bad(_NAMED[key], name, f"{key} is not allowed in Factory's environments")
            elif key in ("network_mode", "pid", "ipc", "uts", "userns_mode", "cgroup"):
                kind = "host" if str(value) == "host" else "container" if str(value).startswith("container:") else ""
                rule = f"{key}: {kind}" if kind else key
                self.bad(rule, name, f"{key}: {value} leaves the environment's own namespaces")
            elif key == "extends":
                file = value.get("file") if isinstance(value, Mapping) else None
                self._path(file, "extends outside worktree", name) if file else None
                self.bad("key not allowed: extends", name, "extends is not supported: write the service out")
            else:
                self.bad(f"key not allowed: {key}", name, f"{key} is not in the part of compose Factory runs")
        if "build" in out:
            out["build"] = self._build(name, out["build"])
        if "env_file" in out:
            items = out["env_file"]
            items = [items] if isinstance(items, str | Mapping) else items or []
            paths = [self._path(i.get("path") if isinstance(i, Mapping) else i, "env_file outside worktree", name)
                     for i in items]  # fmt: skip
            out["env_file"] = [p for p in paths if p]
        if "volumes" in out:
            out["volumes"] = [v for v in (self._volume(name, v) for v in out["volumes"] or []) if v]
        if "deploy" in out:
            for k in set(out["deploy"] or {}) - DEPLOY_KEYS:
                self.bad(f"key not allowed: deploy.{k}", name, f"deploy.{k} is not in the part of compose Factory runs")
        out.pop("labels", None) if not isinstance(out.get("labels"), Mapping | list) else None
        return out

    def _build(self, name: str, build: Any) -> dict[str, Any]:
        build = {"context": build} if isinstance(build, str) else dict(build or {})
        for k in set(build) - BUILD_KEYS:
            self.bad(f"key not allowed: build.{k}", name, f"build.{k} is not in the part of compose Factory runs")
        ctx = str(build.get("context") or ".")
        if "://" in ctx or ctx.startswith(("git@", "docker-image:", "oci-layout:", "service:")):
            self.bad("build context outside worktree", name, f"build context {ctx} is not in the worktree")
            return build
        copied = self._path(ctx, "build context outside worktree", name)
        if copied is None:
            return build
        build["context"] = copied
        dockerfile = str(build.get("dockerfile") or "Dockerfile")
        real_ctx = os.path.realpath(os.path.join(self.base, ctx))
        df = self._path(os.path.join(real_ctx, dockerfile), "build context outside worktree", name)
        if df:
            build["dockerfile"] = os.path.relpath(df, copied)
        return build

    def _volume(self, name: str, vol: Any) -> Any:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) == 1:
                return vol  # an anonymous volume
            src, dst = parts[0], parts[1]
            vol = {"type": "bind" if src.startswith(("/", ".", "~")) else "volume", "source": src, "target": dst}
        if not isinstance(vol, Mapping):
            self.bad("volume", name, f"cannot read the volume entry {vol!r}")
            return None
        vol = {k: v for k, v in vol.items() if k in ("type", "source", "target", "read_only", "volume", "tmpfs")}
        mtype = str(vol.get("type") or "volume")
        if mtype == "bind":
            src = self._path(vol.get("source") or "", "bind mount outside worktree", name)
            # a bind is Factory's copy, read-only: no container changes what another one mounts
            return {"type": "bind", "source": src, "target": vol.get("target"), "read_only": True} if src else None
        if mtype not in ("volume", "tmpfs"):
            self.bad("mount type", name, f"mount type {mtype} is not allowed")
            return None
        return vol

    def _volumes(self, vols: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for vname, vol in vols.items():
            vol, where = dict(vol or {}), f"volume:{vname}"
            if vol.get("external"):
                self.bad("external volume", where, "external volumes belong to someone else")
            elif (vol.get("driver") or "local") != "local":
                self.bad("volume driver", where, f"driver {vol['driver']} is not allowed (local only)")
            elif vol.get("driver_opts"):
                opts = vol["driver_opts"] or {}
                rule = "bind mount outside worktree" if opts.get("device") else "volume driver_opts"
                self.bad(rule, where, f"driver_opts {dict(opts)} may not mount host paths or devices")
            elif vol.get("name") and not str(vol["name"]).startswith(f"{self.project}_"):
                self.bad("volume name", where, f"name {vol['name']} is not this environment's ({self.project}_*)")
            out[str(vname)] = {k: v for k, v in vol.items() if k in ("name", "labels")}
        return out

    def _networks(self, nets: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for nname, net in nets.items():
            net, where = dict(net or {}), f"network:{nname}"
            if net.get("external"):
                self.bad("external network", where, "external networks join other environments")
            elif net.get("name") and not str(net["name"]).startswith(f"{self.project}_"):
                self.bad("network name", where, f"name {net['name']} is not this environment's ({self.project}_*)")
            elif (net.get("driver") or "bridge") != "bridge":
                self.bad("network driver", where, f"driver {net['driver']} is not allowed")
            out[str(nname)] = {k: v for k, v in net.items() if k in ("name", "labels")}
        return out

    def _files(self, section: str, items: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for sname, item in items.items():
            item, where = dict(item or {}), f"{section}:{sname}"
            if set(item) - {"file"}:
                self.bad(f"key not allowed: {section}", where, f"only file: (inside the worktree) for {section}")
                continue
            path = self._path(item.get("file") or "", "bind mount outside worktree", where)
            if path:
                out[str(sname)] = {"file": path}
        return out
