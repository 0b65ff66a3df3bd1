"""`factory doctor`'s sandbox check: a real sandbox, started as an agent run is (limits, seccomp, the
sandbox uid when Factory is root), bridged to a real proxy; it reports what holds inside and asks the
proxy for a refused host.

Side effects: none that outlast it (a temporary worktree and home, the run's cgroups, all removed).
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from factory.config_sections import SandboxConfig
from factory.processes import kill_and_collect
from factory.sandbox.bwrap import PROXY_PORT, SandboxSpec, SandboxUnavailable, build_command
from factory.sandbox.launch import prepare_launch
from factory.sandbox.limits import describe
from factory.sandbox.proxy import EgressProxy

_STATUS = "grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; echo Nice: $(nice)"
_PROBE = f"printf 'CONNECT doctor.invalid:443 HTTP/1.1\\r\\n\\r\\n' | socat -t 5 - TCP:127.0.0.1:{PROXY_PORT}"


def privileges(text: str) -> tuple[list[str], str | None]:
    """(report lines, problem or None) from the sandbox's /proc/self/status lines."""
    status = dict(re.findall(r"^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp|Nice):\s*(\S+)", text, re.M))
    lines = [
        f"runs as uid {status.get('Uid', '?')}",
        f"capabilities CapEff {status.get('CapEff', '?')} CapBnd {status.get('CapBnd', '?')}",
        f"seccomp mode {status.get('Seccomp', '?')} (2: filter), no_new_privs {status.get('NoNewPrivs', '?')}",
    ]
    problems = []
    if status.get("Uid") in (None, "0"):
        problems.append("the sandbox runs as root")
    if any(status.get(k) != "0" * 16 for k in ("CapEff", "CapBnd")):
        problems.append("the sandbox holds capabilities")
    if status.get("Seccomp") != "2" or status.get("NoNewPrivs") != "1":
        problems.append("no seccomp filter")
    return lines, "; ".join(problems) or None


async def self_test(
    proxied: bool = True, timeout: float = 30, sandbox: SandboxConfig | None = None, facts: list[str] | None = None
) -> str | None:
    """None when a sandbox starts bare (and, `proxied`, its proxy answers a refusal); else what went wrong.

    `facts`, when given, gets what holds inside: uid, capabilities, seccomp, each limit and how.
    """
    refused: list[str] = []
    proxy = EgressProxy(on_refused=lambda _task, host, port, _why: refused.append(f"{host}:{port}"))
    sandbox = sandbox or SandboxConfig()
    launch = None
    try:
        with tempfile.TemporaryDirectory(prefix="factory-doctor-") as tmp:
            worktree, home = Path(tmp, "w"), Path(tmp, "h")
            worktree.mkdir()
            home.mkdir()
            channel = await proxy.open(0, []) if proxied else None
            spec = SandboxSpec(worktree=worktree, home=home, proxy_socket=channel.path if channel else None)
            try:
                launch = await asyncio.to_thread(prepare_launch, spec, sandbox, f"doctor-{os.urandom(4).hex()}")
                script = _STATUS + ("; " + _PROBE if proxied else "")
                cmd = build_command(spec, ["/bin/sh", "-c", script])
            except (SandboxUnavailable, OSError, RuntimeError) as exc:
                return str(exc)
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin"},
                start_new_session=True,
                preexec_fn=launch.preexec,
                pass_fds=launch.pass_fds,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                await kill_and_collect(proc)
                return f"the sandbox did not finish within {timeout:g}s"
            text = out.decode(errors="replace").strip()
            if proc.returncode != 0:
                return f"bwrap exited {proc.returncode}: {text[-500:]}"
            lines, problem = privileges(text)
            if facts is not None:
                facts += [*lines, f"limits: {describe(launch.limits)}"]
            if problem:
                return problem
            if proxied and (" 403 " not in text or refused != ["doctor.invalid:443"]):
                return f"the egress proxy did not refuse a host off the allow-list: {text[-500:]!r}"
            return None
    finally:
        if launch is not None:
            await asyncio.to_thread(launch.close)
        await proxy.close()
