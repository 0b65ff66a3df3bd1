"""The shared harness of the attacks on Factory's walls: who runs Factory, and a real sandbox to attack from.

API (all a test file needs):

- fixture `factory_as` (parametrized `root`, `user`): a `RunAs` saying how Factory runs.
  `root`: as the tests do (the sandbox then drops to `sandbox.uid`, 65534). `user`: as the
  unprivileged system user `factory-test` (made with `useradd -r -M` if missing), the Factory side
  in a process of its own under `setpriv --reuid --regid --clear-groups`.
- `RunAs.sandbox(script, interpreter="sh", network="allowlist", limits=None, timeout=60) -> Result`:
  runs `script` (`/bin/sh -c` or `/usr/bin/python3 -c`) inside a real sandbox built as the agent
  activity builds it (`AgentSandbox`, `command()`, `spawn()`; see run_in_sandbox.py), in the CLI's
  place, and returns `Result(rc, stdout, stderr, worktree, home)`. `rc` is the exit status,
  -N for a signal, "timeout" or "error" (the harness failed; stderr says why).
- `RunAs.name`, `.uid`, `.gid`, `.tmp` (a directory of its own, owned by that uid), `.sandbox_uid`
  (the uid the sandbox's processes have on the host).

How `user` reaches Python: the interpreter and its packages are under /root (mode 0700 here), so the
Factory-side process runs in a private mount namespace (`unshare -m`, made as root before the uid
change) where /root is an empty tmpfs holding only the bind-mounted `.pyenv`. It has no capability and
sees nothing else of /root; the code under attack is the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.reach import test_user

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_UID = 65534  # sandbox.uid's default, what the root case drops to


@dataclass
class Result:
    rc: int | str
    stdout: str
    stderr: str
    worktree: str = ""
    home: str = ""


_test_user = test_user


def _python_for_user() -> list[str]:
    """`unshare -m sh -c ...` that shows only the interpreter's tree of /root (and the project, when it is
    under /root too), then drops to the user."""
    exe = os.path.realpath(sys.executable)
    prefix = exe.split("/versions/")[0] if "/.pyenv/" in exe else None
    keep = [p for p in (prefix, str(ROOT)) if p is not None and p.startswith("/root/")]
    if not keep:
        return []  # an interpreter and a project outside /root need nothing
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'set -e; k="$1"; shift; set -- $k -- "$@"; {_KEEP_SH}', "sh", " ".join(keep)]  # fmt: skip


# binds each kept path (the words before `--`) aside, hides /root behind a tmpfs, puts them back, runs the rest
_KEEP_SH = (
    'n=0; for p in "$@"; do [ "$p" = -- ] && break; d=/run/factory-keep.$$.$n; mkdir "$d"; mount --bind "$p" "$d"; '
    "n=$((n+1)); done; mount -t tmpfs -o mode=0755 tmpfs /root; n=0; "
    'while [ "$1" != -- ]; do d=/run/factory-keep.$$.$n; mkdir -p "$1"; mount --move "$d" "$1"; rmdir "$d"; '
    'n=$((n+1)); shift; done; shift; exec "$@"'
)


class RunAs:
    """How Factory runs in a test (see the module docstring); one serving harness process per instance."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = tmp
        if name == "root":
            self.uid = self.gid = 0
            self.sandbox_uid = SANDBOX_UID
            prefix: list[str] = []
        else:
            self.uid, self.gid = _test_user()
            self.sandbox_uid = self.uid
            os.chown(tmp, self.uid, self.gid)
            drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
            prefix = [*_python_for_user(), *drop]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
        env.update({k: v for k, v in os.environ.items() if k.startswith("ANTHROPIC_")})
        self._argv = [*prefix, os.path.realpath(sys.executable), "-m", "tests.adversarial.run_in_sandbox"]
        self._env = env
        self._proc = subprocess.Popen(
            self._argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip

    def start_once(self, script: str, interpreter: str = "sh", task_id: int = 1) -> subprocess.Popen[bytes]:
        """Another harness process, Factory as this user, running one sandbox: for tests that kill it mid-run."""
        req = {"workspace": str(self.tmp), "script": script, "interpreter": interpreter, "timeout": 300,
               "task_id": task_id}  # fmt: skip
        return subprocess.Popen([*self._argv, json.dumps(req)], cwd=ROOT, env=self._env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def sandbox(
        self, script: str, interpreter: str = "sh", network: str = "allowlist", limits: dict[str, Any] | None = None,
        timeout: float = 60, task_id: int = 1, worker_path: str | None = None,
    ) -> Result:  # fmt: skip
        """One sandbox; `worker_path`: the worker's PATH while it is built (run_in_sandbox.py)."""
        req = {"workspace": str(self.tmp), "script": script, "interpreter": interpreter, "network": network,
               "limits": limits or {}, "timeout": timeout, "task_id": task_id}  # fmt: skip
        if worker_path is not None:
            req["worker_path"] = worker_path
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(req) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} harness died (rc {self._proc.wait()})")
        return Result(**json.loads(line))

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture(scope="module", params=["root", "user"])
def factory_as(request: pytest.FixtureRequest) -> Iterator[RunAs]:
    if os.geteuid() != 0:
        pytest.skip("the adversarial harness runs as root (it makes the unprivileged user itself)")
    tmp = Path(tempfile.mkdtemp(prefix=f"factory-adv-{request.param}-"))
    run_as = RunAs(request.param, tmp)
    try:
        yield run_as
    finally:
        run_as.close()
        shutil.rmtree(tmp, ignore_errors=True)
