"""Read an agent's compose file once, copy what it names, and shape the file Factory runs.

`prepare` runs in a thread (it reads and copies files); `harden` turns the checked config
into Factory's: internal networks, Factory's image names for what it builds, no published
ports, Factory's labels on every service.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from factory.environments.checks import UnsafeComposeError
from factory.environments.copy import Copier, CopyRefused, read_bounded
from factory.environments.spec import Rewriter, interpolate, parse_dotenv

MAX_COMPOSE_BYTES = 1 << 20
COPY_DIR = "tree"  # inside the environment's directory: the copied files, same layout as the worktree


class PrepareError(Exception):
    """The request cannot be served (no such file, not a mapping): a bad request, not a rule broken."""


def envs_root(workspace_root: str | os.PathLike[str]) -> Path:
    """Where Factory keeps environments' copies (outside every sandbox: agents bind only their worktree)."""
    return Path(workspace_root).resolve() / "envs"


def resolve_compose_file(worktree: str, compose_file: str) -> str:
    """The compose file's real path; it must be a file inside the worktree (and not in .git)."""
    wt = os.path.realpath(worktree)
    p = compose_file if os.path.isabs(compose_file) else os.path.join(wt, compose_file)
    real = os.path.realpath(p)
    if not real.startswith(wt + os.sep) or ".git" in os.path.relpath(real, wt).split(os.sep):
        raise PrepareError(f"the compose file {compose_file} is outside the worktree {wt}")
    if not os.path.isfile(real):
        raise PrepareError(f"no compose file at {compose_file} in the worktree")
    return real


def prepare(worktree: str, compose_file: str, project: str, root: Path, max_bytes: int) -> tuple[str, dict]:
    """(the environment's directory, the checked config pointing into its copy). Blocking.

    Raises:
        PrepareError: no compose file, or not YAML.
        UnsafeComposeError: a key off the allow-list, a path out of the worktree, a file that
            cannot be copied (each a `Violation`); the directory is removed again.
    """
    wt = os.path.realpath(worktree)
    file = resolve_compose_file(wt, compose_file)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    env_dir = root / f"{project}-{time.time_ns()}"
    env_dir.mkdir(mode=0o700)
    try:
        try:
            raw = read_bounded(file, wt, MAX_COMPOSE_BYTES)
            doc = yaml.safe_load(raw)
        except (CopyRefused, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise PrepareError(f"cannot read {os.path.relpath(file, wt)}: {exc}") from exc
        if not isinstance(doc, Mapping):
            raise PrepareError(f"{os.path.relpath(file, wt)} is not a compose file (no mapping at the top)")
        (env_dir / "compose.agent.yml").write_bytes(raw)  # the bytes that were checked, for the record
        dotenv = os.path.join(os.path.dirname(file), ".env")
        variables: dict[str, str] = {}
        if os.path.lexists(dotenv):  # values to fill ${VAR} with; compose itself never reads this file
            try:
                variables = parse_dotenv(read_bounded(dotenv, wt, 64 * 1024).decode(errors="replace"))
            except CopyRefused as exc:
                raise PrepareError(f"cannot read .env: {exc}") from exc
        copier = Copier(wt, str(env_dir / COPY_DIR), max_bytes)
        rewriter = Rewriter(os.path.dirname(file), wt, copier.copy_path, project)
        config = rewriter.document(interpolate(dict(doc), variables))
        if rewriter.violations:
            raise UnsafeComposeError(rewriter.violations)
        return str(env_dir), config
    except BaseException:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise


def harden(final: dict[str, Any], project: str, preview_network: str | None) -> dict[str, Any]:
    """Factory's last word on the file it runs (after `finalize_config`).

    - every network of the environment is `internal: true`: no route out (the preview's
      routed service also sits on Traefik's network, Factory's);
    - no port is published: on an internal network Docker publishes none, and Factory
      reaches services at their address on the project's network instead;
    - a service Factory builds gets Factory's image name (`<project>-<service>`): an agent's
      `image:` next to `build:` would otherwise retag an image other tasks pull by name.
    """
    for name, net in (final.get("networks") or {}).items():
        if name != preview_network:
            net["internal"] = True
    for name, svc in (final.get("services") or {}).items():
        svc.pop("ports", None)
        if svc.get("build") is not None:
            svc["image"] = f"{project}-{name}:latest"
    return final
