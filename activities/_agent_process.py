"""How an agent's process is contained, started and stopped (the private half of activities/agent.py).

- `AgentSandbox`: the task's CLI home, the allow-listed environment, and the bubblewrap command
  line around the CLI with, in `allowlist` mode, a proxy channel open for the run's duration.
- `PidFile`: which process group a run left behind, checked (start time, program) before a later
  attempt kills it, since pids are reused. It lives in the run dir, which no sandbox can see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.exceptions import ApplicationError

from activities._session_seed import seed_transcript
from factory.config import PACKAGE_ROOT, FactoryConfig
from factory.git.clones import mirror_path
from factory.processes import die_with_parent, drain, process_program, process_start_time, reap
from factory.sandbox.bwrap import INSTALL_HINT, TOOLKIT_ROOT, SandboxSpec, build_command, missing_tools
from factory.sandbox.gateway import MODEL_HOST, GatewayRun, ModelGateway
from factory.sandbox.gateway_openai import OpenAIRoute
from factory.sandbox.launch import SandboxArgv, prepare_launch
from factory.sandbox.policy import allowed_destinations, sandbox_environment, seed_settings
from factory.sandbox.proxy import EgressProxy
from factory.store.writes import add_log

_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/lib/", "/lib64/", "/sbin/")
SERVICE_DIR = "/run/factory"
_SEEDED = ("settings.json",)  # the operator's CLI preferences; never credentials or other sessions


@dataclass
class PidFile:
    """`<run dir>/task-N.pid`: "<pid> <start time> <program> <activity id> <attempt>"."""

    path: Path

    def write(self, pid: int, activity_id: str, attempt: int) -> None:
        start = process_start_time(pid) or "?"
        self.path.write_text(f"{pid} {start} {process_program(pid) or '?'} {activity_id} {attempt}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def kill_stale(self, session_id: str = "", cwd: str = "") -> bool:
        """SIGKILL the recorded process group if its leader is still the process that was recorded; and,
        given the run's session id and checkout, every process still carrying the one in the other, until none
        is left (see `reap`)."""
        try:
            fields = self.path.read_text().split()
            pid, start, program = int(fields[0]), fields[1], fields[2]
        except (FileNotFoundError, ValueError, IndexError):
            self.remove()
            return False
        killed = False
        # a reused pid has another start time; a pid file from an older Factory has no start time
        # and is not trusted at all
        if process_start_time(pid) == start and process_program(pid) == program:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed = True
        elif process_start_time(pid) is None:
            # the leader is gone but its group may not be (a sandbox whose parent died without taking it
            # along): a pid is not reused while a group still bears it, so the group is what the run left
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed = True
        if len(session_id) >= 16 and cwd:
            reap(session_id, cwd)
        self.remove()
        return killed


async def spawn(cmd: list[str], cwd: str, env: dict[str, str], stderr_path: Path) -> asyncio.subprocess.Process:
    """Start an agent in its own process group (its pid is the group's), killed if the worker dies.

    A sandboxed argv (`SandboxArgv`) brings its `Launch`: the child joins the run's cgroups, takes
    its rlimits and nice value and, when Factory is root, drops to the sandbox uid before bwrap.
    """
    launch = getattr(cmd, "launch", None)
    with open(stderr_path, "ab") as stderr:
        if launch is not None:
            os.lseek(launch.seccomp, 0, os.SEEK_SET)  # bwrap reads the filter from where the fd stands
            return await asyncio.create_subprocess_exec(
                *cmd,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=launch.preexec,
                pass_fds=launch.pass_fds,
                limit=32 * 1024 * 1024,
            )
        return await asyncio.create_subprocess_exec(
            *cmd,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=die_with_parent,
            limit=32 * 1024 * 1024,
        )


async def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after 3 s; in the sandbox bwrap's death ends them all."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    ended = asyncio.gather(drain(proc.stdout), drain(proc.stderr), proc.wait())  # nobody reads its pipes now
    try:
        await asyncio.wait_for(asyncio.shield(ended), 3)
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ended, 5)


_ALTERNATES_CAP = 4096  # Factory writes one line naming the mirror's objects; anything longer is not its


def _unsafe(what: str) -> ApplicationError:
    return ApplicationError(
        f"the task's checkout was tampered with: {what}; the agent is not run again in it",
        type="UnsafeCheckout",
        non_retryable=True,
    )


def _read_capped(path: Path, cap: int) -> bytes:
    """At most `cap` + 1 bytes of a regular file, never through a symlink (the agent writes these files)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return os.read(fd, cap + 1)
    finally:
        os.close(fd)


def checkout_binds(worktree: Path, root: Path, mirror: Path | None) -> list[Path]:
    """The read-only paths a run in `worktree` needs besides it: the mirror's `objects`, nothing else.

    What is bound comes from Factory's own record: `worktree` (WorkspaceInfo.path, in the workflow's
    history), `root` (workspace_root) and `mirror` (`mirror_path` of the task's repo name, as the
    workspace activity computed it). Nothing under `.git` decides a bind: the agent writes it
    between runs (a `.git` file saying `gitdir: <mirror>` once got the mirror bound writable). The
    checkout is checked against what Factory made instead, and a run in one that differs stops, not
    retried: `.git` a plain directory, no `commondir`, alternates exactly the line Factory wrote.
    Failing (rather than restoring) is deliberate: finalize and cleanup restore what they need
    (`TaskClone.secure`), and an agent that rewired its git dir gets no further run to use it.

    Raises:
        ApplicationError (UnsafeCheckout, non-retryable): the checkout is not what Factory made.
    """
    worktrees = root / "worktrees"
    if worktree.parent != worktrees or not worktree.name.startswith("task-"):
        raise _unsafe(f"{worktree} is not a checkout of this Factory's ({worktrees}/task-N)")
    for p in (worktrees, worktree):  # the run dir's parents are Factory's; a link here would move the bind
        if p.is_symlink() or not p.is_dir():
            raise _unsafe(f"{p} is not a plain directory")
    dotgit = worktree / ".git"
    if dotgit.is_symlink() or not dotgit.is_dir():
        raise _unsafe("`.git` is not a plain directory (replaced by a file or a link)")
    if os.path.lexists(dotgit / "commondir"):
        raise _unsafe("`.git/commondir` was planted")
    if mirror is None:  # no record of the repo (an old request): nothing outside the checkout is bound
        return []
    objects = mirror / "objects"
    info = dotgit / "objects" / "info"
    for p in (dotgit / "objects", info):
        if p.is_symlink():
            raise _unsafe(f"`{p.relative_to(worktree)}` is a link")
    try:
        alternates = _read_capped(info / "alternates", _ALTERNATES_CAP)
    except OSError as exc:
        raise _unsafe(f"`.git/objects/info/alternates` cannot be read as a file ({exc.strerror or exc})") from None
    if alternates != f"{objects}\n".encode():
        raise _unsafe("`.git/objects/info/alternates` is not the line Factory wrote")
    if objects.is_symlink() or not objects.is_dir():
        return []  # the mirror is Factory's; a missing one is bound nowhere
    return [objects]


def read_head(path: Path, limit: int) -> str:
    """The first `limit` bytes of a file as text (FileNotFoundError when there is none)."""
    with open(path, "rb") as fh:
        return fh.read(limit).decode(errors="replace")


def read_tail(path: Path, limit: int) -> str:
    """The last `limit` bytes of a file as text, "" when there is none: a file an agent can fill is never read whole."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - limit))
            return fh.read(limit).decode(errors="replace")
    except FileNotFoundError:
        return ""


class AgentSandbox:
    """One run's containment: its home, environment and command line (see the module docstring)."""

    def __init__(self, cfg: FactoryConfig, proxy: EgressProxy | None = None) -> None:
        self.cfg = cfg
        self.proxy = proxy
        self.enabled = cfg.sandbox.enabled
        self.proxied = self.enabled and cfg.sandbox.network == "allowlist"
        self.gateway = ModelGateway.from_config(cfg)  # holds the model key; agents get a stand-in
        self._settings: str | None = None  # cli_settings(), read once

    def check(self) -> None:
        """Fail the task at once (not retried) when the sandbox or the model gateway cannot work here."""
        if not self.gateway.has_credential:
            raise ApplicationError(
                "ANTHROPIC_API_KEY is not set: put it in the environment or .env of the worker",
                type="AgentUnavailable",
                non_retryable=True,
            )
        if not self.enabled:
            return
        missing = missing_tools(self.proxied)
        if missing:
            raise ApplicationError(
                f"agents run in a sandbox and {', '.join(missing)} is not installed: {INSTALL_HINT}; "
                "or set `sandbox.enabled: false` in config.yml (agents then reach all of Factory)",
                type="SandboxUnavailable",
                non_retryable=True,
            )
        if self.proxied and self.proxy is None:
            raise ApplicationError(
                "sandbox.network is allowlist but this worker runs no egress proxy",
                type="SandboxUnavailable",
                non_retryable=True,
            )

    def home(self, task_id: int) -> Path:
        """The task's CLI home (HOME; its `.claude` is CLAUDE_CONFIG_DIR), kept between its runs."""
        return self.cfg.workspace_path / "homes" / f"task-{task_id}"

    def ensure_home(self, task_id: int) -> Path:
        home = self.home(task_id)
        config = home / ".claude"
        if not config.is_dir():
            config.mkdir(parents=True, exist_ok=True)
            source = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
            for name in _SEEDED:  # without credential helpers or variables off the allow-list
                seed_settings(source / name, config / name)
        return home

    async def seed_session(self, task_id: int, parent_id: int, session_id: str, cwd: str) -> str | None:
        """Put task `parent_id`'s Claude session into this task's home for `cwd` (activities/_session_seed.py).

        None when the session is there to resume; otherwise why not (the round then starts afresh).
        """
        homes = self.cfg.workspace_path / "homes"
        why = await asyncio.to_thread(seed_transcript, homes, parent_id, task_id, session_id, cwd)
        if why is None:
            return None
        return f"task #{parent_id}'s session was not carried over ({why}); this round starts afresh, with its reply"

    def settings_args(self) -> list[str]:
        """The CLI's flags for its settings, for every agent type: Factory's alone.

        None from the checkout (`project`: `.claude/settings.json`, `local`: `settings.local.json`,
        `.mcp.json`), none from the CLI home (`user`: the agent writes it too, and a later run would
        read it), no MCP server but Factory's (`--strict-mcp-config` with none given). Measured with
        the CLI 2.1.x: hooks, MCP servers and agent definitions from those files do not run then,
        while `--bare` and `--safe-mode` still read the home's settings (its `env`, `apiKeyHelper`).
        The checkout's CLAUDE.md is not loaded either (it is a project source); the agent can read it.
        """
        return ["--setting-sources", "", "--strict-mcp-config", "--settings", self.cli_settings()]

    def cli_settings(self) -> str:
        """The only settings the CLI reads (`--settings`, inline JSON): the operator's, filtered as the seed is.

        Inline, so no file the sandbox can write is ever read as settings: the checkout's and the
        home's settings files (the seeded copy included) are the agent's to write, and the CLI is told
        to ignore them (`--setting-sources ""`, activities/agent.py).
        """
        if self._settings is None:
            source = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude") / "settings.json"
            with tempfile.TemporaryDirectory(prefix="factory-cli-settings-") as tmp:
                target = Path(tmp) / "settings.json"
                self._settings = target.read_text() if seed_settings(source, target) else "{}"
            self._settings = json.dumps(json.loads(self._settings), separators=(",", ":"))
        return self._settings

    @asynccontextmanager
    async def model_gateway(self, budget: float | None, route: OpenAIRoute | None = None) -> AsyncIterator[GatewayRun]:
        """The run's side of the model gateway (stand-in key, meter, `budget` in USD), valid while this lasts.

        A proxied run reaches it as a virtual host of its own channel; any other run on a loopback port.
        """
        run = self.gateway.open_run(budget, route)  # `route`: an OpenAI-speaking backend's upstream
        try:
            if not self.proxied:
                await run.listen()
            yield run
        finally:
            await run.close()

    def environment(self, task_id: int, gateway: GatewayRun) -> dict[str, str]:
        """The allow-listed base environment of a run (the caller adds the toolkit's variables)."""
        home = str(self.home(task_id))
        env = sandbox_environment(self.cfg, home, self.proxied, model_url=gateway.base_url, stand_in=gateway.stand_in)
        env["PYTHONPATH"] = TOOLKIT_ROOT if self.enabled else str(PACKAGE_ROOT)
        return env

    def service_socket(self, host_path: str) -> str:
        """Where a run sees one of Factory's service sockets (its host path when unsandboxed)."""
        return f"{SERVICE_DIR}/{Path(host_path).name}" if self.enabled else host_path

    @asynccontextmanager
    async def command(
        self, task_id: int, cwd: str, inner: Sequence[str], sockets: Sequence[str] = (),
        gateway: GatewayRun | None = None, repo_name: str = "", read_only_checkout: bool = False,
    ) -> AsyncIterator[list[str]]:  # fmt: skip
        """The argv that runs `inner` for this task, sandboxed; its proxy channel lives as long as this.

        `sockets`: unix sockets of Factory's services the run may use (the Docker broker's, which
        wants a capability token), shown at `service_socket(path)`, not in the host's run dir.
        `repo_name`: the task's repo, whose mirror's objects the checkout borrows (see `checkout_binds`).
        `read_only_checkout`: the worktree is bound read-only (an agent that must not write, on a
        backend with no per-tool list: factory/backends/).
        """
        if not self.enabled:
            yield list(inner)
            return
        worktree = Path(cwd)
        root = self.cfg.workspace_path
        mirror = mirror_path(root, repo_name) if repo_name else None
        ro = await asyncio.to_thread(checkout_binds, worktree, root, mirror)  # from Factory's record only
        program = Path(os.path.realpath(inner[0]))
        if not str(program).startswith(_SYSTEM_PREFIXES):  # a CLI installed outside /usr
            ro.append(program.parent)
        channel = None
        if self.proxied:
            assert self.proxy is not None
            vhosts = {(MODEL_HOST, 80): gateway.serve} if gateway is not None else {}
            channel = await self.proxy.open(task_id, allowed_destinations(self.cfg), vhosts)
        spec = SandboxSpec(
            worktree=worktree,
            home=self.home(task_id),
            read_only=ro,
            writable=[],
            binds=[(Path(s), self.service_socket(s)) for s in sockets if Path(s).exists()],
            toolkit=PACKAGE_ROOT / "docker_toolkit",
            proxy_socket=channel.path if channel else None,
            read_only_worktree=read_only_checkout,
        )
        launch = None
        try:  # limits, seccomp and, as root, the sandbox uid (chowns the trees it writes)
            launch = await asyncio.to_thread(prepare_launch, spec, self.cfg.sandbox, f"{task_id}-{os.urandom(4).hex()}")
            argv = SandboxArgv(build_command(spec, [str(program), *inner[1:]]))
            argv.launch = launch
            yield argv
        finally:
            if launch is not None:
                await asyncio.to_thread(launch.close)
            if channel is not None:
                await self.proxy.close_channel(channel)  # type: ignore[union-attr]


def refusal_logger(engine: Engine) -> Callable[[int, str, int, str], Awaitable[None]]:
    """The proxy's `on_refused`: one "event" line in the task's log per refused connection."""

    async def log_refusal(task_id: int, host: str, port: int, reason: str) -> None:
        text = f"sandbox: refused a connection to {host}:{port} ({reason})"
        await asyncio.to_thread(add_log, engine, task_id, "event", text)

    return log_refusal
