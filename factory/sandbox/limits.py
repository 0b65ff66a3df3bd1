"""Resource limits of one sandboxed run: processes, memory, CPU priority and share, file size.

Each limit is enforced the strongest way this host allows, and `RunLimits.how` says which:

- a cgroup per run, `<Factory's own cgroup>/factory/run-<id>`: cgroup v2 (`pids.max`, `memory.max`,
  `cpu.weight`) where a v2 hierarchy lets Factory enable those controllers, else v1 (`pids.max`,
  `memory.limit_in_bytes`, `cpu.shares`) in each mounted controller Factory may write. The child
  joins the cgroups before it execs bwrap, so every process of the run is counted. Made under
  Factory's own cgroup so any limit Factory itself runs under still holds for its agents;
- otherwise rlimits: RLIMIT_NPROC set inside the sandbox by `prlimit` (with a user namespace per run,
  kernels since 5.14 count it per namespace, so it caps this run, not every process of the uid),
  RLIMIT_DATA (private writable memory per process: a weaker cap than a cgroup's, but node's large
  address-space reservations do not count against it, unlike RLIMIT_AS);
- always: RLIMIT_FSIZE, RLIMIT_CORE 0 (no core files of a process holding the stand-in key) and a
  nice value at least `nice` (below Factory's own, so agents never starve the control plane).

What it trusts: nothing from the run. Cgroup paths are built from /proc/self (Factory's own process)
and a run id Factory made; the child only writes its pid to files the parent chose.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from factory.processes import which

_V1 = ("pids", "memory", "cpu")
_STALE = "run-"


@dataclass(frozen=True)
class Limits:
    """`sandbox.limits` of config.yml (`factory.config_sections.SandboxLimits` carries the same fields)."""

    processes: int = 512
    memory_mb: int = 4096
    nice: int = 10
    file_size_mb: int = 1024
    cpu_weight: int | None = None
    agents_cpu_weight: int | None = None
    """All runs together against Factory's own cgroup (100): the `factory` parent's weight. With 20 busy
    agents the control plane still gets ~90% of a CPU when it wants one; idle, the agents take it all."""


@dataclass
class RunLimits:
    """One run's limits: made in the parent (`prepare`), applied in the child (`apply_in_child`)."""

    limits: Limits
    how: dict[str, str] = field(default_factory=dict)
    """limit -> how it is enforced, e.g. {"processes": "cgroup v1", "memory": "rlimit DATA"}."""
    cgroups: list[Path] = field(default_factory=list)
    rlimits: list[tuple[int, int]] = field(default_factory=list)
    inner: list[str] = field(default_factory=list)
    """Put in front of the sandbox's first program (`prlimit --nproc=N:N --` when no pids cgroup)."""
    v1: bool = False
    """The cgroups are v1: the child joins each through its `tasks` file (see `apply_in_child`)."""

    def apply_in_child(self) -> None:
        """Between fork and exec, still as the starting user: join the cgroups, set rlimits and nice.

        Only os calls on values made beforehand: this runs in a forked child of a threaded worker.
        """
        # v1: "0" written to `tasks` moves the calling thread, which in a child just forked is the whole
        # process, and the kernel then skips its global threadgroup lock, whose first taking waits out an
        # RCU grace period (6-14 ms here, with the worker's event loop blocked in the spawn meanwhile).
        # v2 has no `tasks` outside threaded cgroups: the process joins through `cgroup.procs`
        name, value = ("tasks", b"0") if self.v1 else ("cgroup.procs", str(os.getpid()).encode())
        for cg in self.cgroups:
            fd = os.open(cg / name, os.O_WRONLY)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
        for res, value in self.rlimits:
            soft, hard = resource.getrlimit(res)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(res, (value, value))
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < self.limits.nice:
            os.setpriority(os.PRIO_PROCESS, 0, self.limits.nice)
        # with the kernel's autogroups (sched_autogroup_enabled) the run's new session is a scheduling group
        # of its own, weighed like Factory's whatever the nice value above: the group gets the nice value too.
        # Only a default: the agent may write its group's nice back to 0 or setsid() into new groups (no
        # privilege needed; tests/adversarial/test_cpu_walls.py). Autogroups apply only in the root cpu
        # cgroup, so with the agents' cgroup this does not matter; without one, nothing holds the CPU
        with contextlib.suppress(OSError):
            fd = os.open("/proc/self/autogroup", os.O_WRONLY)
            try:
                os.write(fd, str(self.limits.nice).encode())
            finally:
                os.close(fd)

    def close(self) -> None:
        """Remove the run's cgroups; their processes are gone or going (bwrap's PID namespace died)."""
        for cg in self.cgroups:
            _rmdir(cg)
            # the `factory` parent too once no run uses it: an empty child cgroup left in the cgroup
            # Factory runs in would stop whoever made that one from removing it
            with contextlib.suppress(OSError):
                cg.parent.rmdir()
        self.cgroups = []


def _rmdir(cg: Path, wait: float = 2.0) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            cg.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY while the last processes of the run exit
            if time.monotonic() > deadline:
                return  # `remove_stale` takes it later
            _kill_members(cg)
            time.sleep(0.001)  # usually a millisecond: the exiting processes are released


def _make(cg: Path) -> None:
    """mkdir the run's cgroup, and its parent if another run's end just removed it (v2: with the
    controllers enabled for its children again). Fails on an existing name: a run never takes over
    (or later removes) another run's cgroup."""
    for _ in range(3):
        try:
            cg.mkdir()
            return
        except FileNotFoundError:
            cg.parent.mkdir(exist_ok=True)
            if (cg.parent / "cgroup.subtree_control").exists():  # v2
                _write(cg.parent / "cgroup.subtree_control", "+pids +memory +cpu")
    cg.mkdir()


def _kill_members(cg: Path) -> None:
    with contextlib.suppress(OSError):
        for line in (cg / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(line), 9)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of this process's cgroup mounts."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fstype, _src, sopts = (right.split() + ["", "", ""])[:3]
            if fstype in ("cgroup", "cgroup2"):
                out.append((left.split()[4], fstype, set(sopts.split(","))))
    return out


def _own_cgroups() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, ctrls, path = line.split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


@functools.cache
def _v2_parent() -> Path | None:
    """A v2 directory where Factory can make run cgroups with pids, memory and cpu, or None."""
    own = _own_cgroups().get("")
    if own is None:
        return None
    for mnt, fstype, _ in _mounts():
        if fstype != "cgroup2":
            continue
        base = Path(mnt + own.rstrip("/"))
        available = set(_read(Path(mnt) / "cgroup.controllers").split()) | set(
            _read(base / "cgroup.controllers").split()
        )
        if not {"pids", "memory"} <= available:
            continue
        # Factory's own cgroup holds Factory's processes, so (no internal processes) the controllers are
        # enabled for a `factory` child, which holds none, and the runs go under it. A cgroup prepared
        # for it (systemd Delegate=yes with DelegateSubgroup=) works the same from the parent.
        for parent in (base, base.parent):
            try:
                _write(parent / "cgroup.subtree_control", "+pids +memory +cpu")
                sub = parent / "factory"
                sub.mkdir(exist_ok=True)
                _write(sub / "cgroup.subtree_control", "+pids +memory +cpu")
                return sub
            except OSError:
                continue
    return None


@functools.cache
def _v1_parents() -> dict[str, Path]:
    """controller -> a v1 `factory` directory Factory may make run cgroups in."""
    own = _own_cgroups()
    out: dict[str, Path] = {}
    for mnt, fstype, opts in _mounts():
        for ctrl in _V1:
            if fstype != "cgroup" or ctrl not in opts or ctrl in out or ctrl not in own:
                continue
            sub = Path(mnt + own[ctrl].rstrip("/")) / "factory"
            with contextlib.suppress(OSError):
                sub.mkdir(exist_ok=True)
                if os.access(sub, os.W_OK):
                    out[ctrl] = sub
    return out


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


def prepare(limits: Limits, run_id: str | None = None) -> RunLimits:
    """Make the run's cgroups (or plan rlimits) for `limits`; `close()` the result when the run ends."""
    _remove_stale_once()  # the first run of a worker process takes what a killed one left
    run = RunLimits(limits)
    name = f"{_STALE}{run_id or uuid.uuid4().hex[:12]}"
    mem = limits.memory_mb * 1024 * 1024
    done: set[str] = set()
    v2 = _v2_parent()
    if v2 is not None:
        try:
            cg = v2 / name
            _make(cg)
            run.cgroups.append(cg)
            _write(cg / "pids.max", str(limits.processes))
            _write(cg / "memory.max", str(mem))
            if (cg / "memory.swap.max").exists():
                _write(cg / "memory.swap.max", "0")
            done |= {"processes", "memory"}
            if limits.cpu_weight and (cg / "cpu.weight").exists():
                _write(cg / "cpu.weight", str(limits.cpu_weight))
                done.add("cpu")
            if limits.agents_cpu_weight and (v2 / "cpu.weight").exists():
                # written after _make: the parent is re-made (default weight) when the last run's end removed it
                _write(v2 / "cpu.weight", str(limits.agents_cpu_weight))
                done.add("agents' cpu")
            run.how.update({k: "cgroup v2" for k in done})
        except OSError:
            run.close()
            done = set()
    if not done:
        run.v1 = True
        for ctrl, parent in _v1_parents().items():
            if ctrl == "cpu" and not (limits.cpu_weight or limits.agents_cpu_weight):
                continue
            cg = parent / name
            try:
                _make(cg)
                run.cgroups.append(cg)
                if ctrl == "pids":
                    _write(cg / "pids.max", str(limits.processes))
                    done.add("processes")
                elif ctrl == "memory":
                    _write(cg / "memory.limit_in_bytes", str(mem))
                    if (cg / "memory.memsw.limit_in_bytes").exists():  # swap counted too, where accounted
                        _write(cg / "memory.memsw.limit_in_bytes", str(mem))
                    done.add("memory")
                else:  # v1 shares: 1024 is the default, as 100 is cpu.weight's
                    if limits.cpu_weight:
                        _write(cg / "cpu.shares", str(_shares(limits.cpu_weight)))
                        done.add("cpu")
                    if limits.agents_cpu_weight:
                        _write(parent / "cpu.shares", str(_shares(limits.agents_cpu_weight)))
                        done.add("agents' cpu")
            except OSError:
                if cg in run.cgroups:
                    run.cgroups.remove(cg)
                    _rmdir(cg, 0)
        run.how.update({k: "cgroup v1" for k in done})
    if "processes" not in done:
        # by absolute path: bwrap looks a bare name up on the run's PATH, from its cwd, the checkout
        run.inner = [which("prlimit") or "/usr/bin/prlimit", f"--nproc={limits.processes}:{limits.processes}", "--"]
        run.how["processes"] = "rlimit NPROC in the sandbox's user namespace"
    if "memory" not in done:
        run.rlimits.append((resource.RLIMIT_DATA, mem))
        run.how["memory"] = "rlimit DATA per process"
    run.rlimits += [(resource.RLIMIT_FSIZE, limits.file_size_mb * 1024 * 1024), (resource.RLIMIT_CORE, 0)]
    run.how["file size"] = "rlimit FSIZE"
    run.how["priority"] = f"nice {limits.nice}"
    if "cpu" not in done and limits.cpu_weight:
        run.how["cpu"] = "not enforced (no cpu cgroup)"
    if "agents' cpu" not in done and limits.agents_cpu_weight:
        run.how["agents' cpu"] = "not enforced (no cpu cgroup): nice only, which an agent's new session sidesteps"
    return run


def _shares(weight: int) -> int:
    return max(2, weight * 1024 // 100)


@functools.cache
def _remove_stale_once() -> int:
    return remove_stale()


def remove_stale(min_age: float = 300) -> int:
    """Remove run cgroups a killed worker left behind: empty ones (rmdir refuses the others) older than
    `min_age` seconds (so not one another worker just made and has not joined yet)."""
    parents = list(_v1_parents().values())
    v2 = _v2_parent()
    if v2 is not None:
        parents.append(v2)
    removed = 0
    for parent in parents:
        with contextlib.suppress(OSError):
            for cg in parent.iterdir():
                if cg.is_dir() and cg.name.startswith(_STALE):
                    with contextlib.suppress(OSError):
                        if time.time() - cg.stat().st_mtime < min_age:
                            continue
                        cg.rmdir()
                        removed += 1
    return removed


def describe(run: RunLimits) -> str:
    """One line for `factory doctor` and logs: each limit and how it is enforced."""
    lim = run.limits
    values = {
        "processes": str(lim.processes),
        "memory": f"{lim.memory_mb} MiB",
        "file size": f"{lim.file_size_mb} MiB",
        "priority": "",
        "cpu": f"weight {lim.cpu_weight}",
        "agents' cpu": f"weight {lim.agents_cpu_weight} against Factory's 100",
    }
    return "; ".join(f"{k} {values.get(k, '')} ({v})".replace("  ", " ") for k, v in run.how.items())
