"""Settings: the effective configuration with secrets masked and where each value came from, and
what the dashboard needs to start (configured repos, agent types, workflows, the Temporal web UI)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import CfgDep
from api.errors import JSONRoute
from factory.config import SECRET_FIELDS, FactoryConfig, is_secret_name
from factory.specs import run_workflow_id, task_workflow_id, workflow_definitions

router = APIRouter(prefix="/api/settings", tags=["settings"], route_class=JSONRoute)

MASK = "********"
Source = Literal["config.yml", "default", "command line", "environment", ".env", "unset"]
_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")


class SettingPublic(BaseModel):
    key: str = Field(description="dotted path, as in config.yml")
    value: Any = Field(description=f"the value in force; {MASK!r} for a secret that is set")
    source: Source
    secret: bool = False


class SettingsPublic(BaseModel):
    config_file: str | None
    settings: list[SettingPublic]


class RepoPublic(BaseModel):
    name: str
    github: str | None
    default_agent: str
    default_branch: str | None


class DashboardPublic(BaseModel):
    """What the dashboard needs to draw its forms and links."""

    repos: list[RepoPublic]
    default_org: str
    agent_types: list[str]
    workflows: list[str]
    message_board: bool
    memory: bool
    temporal_ui: str = Field(description="the Temporal web UI's base URL")
    namespace: str
    task_workflow_id: str = Field(description="a task's workflow id, with `{id}` for the task id")
    run_workflow_id: str = Field(description="a workflow run's workflow id, with `{id}` for the run id")
    repo_example: str = Field(description="a config.yml snippet that adds a repo")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts by dotted path (lists and empty dicts are leaves)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _file_values(cfg: FactoryConfig) -> dict[str, Any]:
    if not cfg.config_file or not Path(cfg.config_file).is_file():
        return {}
    try:
        data = yaml.safe_load(Path(cfg.config_file).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return _flatten(data) if isinstance(data, dict) else {}


def _masked(key: str, value: Any, secrets: list[str]) -> tuple[Any, bool]:
    """The value as it may be shown, and whether anything was hidden."""
    if value in (None, "", [], {}):
        return value, False
    if is_secret_name(key.rsplit(".", 1)[-1]):
        return MASK, True
    if isinstance(value, list):
        shown = [_masked(key, v, secrets) for v in value]
        return [v for v, _ in shown], any(hid for _, hid in shown)
    if not isinstance(value, str):
        return value, False
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", value)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text, text != value


def effective_settings(cfg: FactoryConfig) -> list[SettingPublic]:
    """Every setting in force, secrets masked, each with its source.

    Non-secret values come from config.yml, the command line (`load_config` overrides) or the
    defaults; secrets only from the environment or `.env` (config.yml may not hold them).
    """
    skip = SECRET_FIELDS | {"config_file"}
    values = _flatten(cfg.model_dump(mode="json", exclude=skip))
    defaults = _flatten(FactoryConfig.model_construct().model_dump(mode="json", exclude=skip))
    in_file = _file_values(cfg)
    secrets = sorted(cfg.secret_values(), key=len, reverse=True)
    out = []
    for key, value in sorted(values.items()):
        if key in in_file:
            source: Source = "config.yml" if in_file[key] == value else "command line"
        elif key in defaults and defaults[key] == value:
            source = "default"
        elif any(k.startswith(key + ".") or key.startswith(k + ".") for k in in_file):
            source = "config.yml"  # a key of an entry config.yml made (e.g. a repo's default_agent)
        else:
            source = "command line"
        shown, hidden = _masked(key, value, secrets)
        out.append(SettingPublic(key=key, value=shown, source=source, secret=hidden))
    for name in sorted(SECRET_FIELDS):
        env_name = name.upper()
        is_set = getattr(cfg, name) is not None
        source = ("environment" if os.environ.get(env_name) else ".env") if is_set else "unset"
        out.append(SettingPublic(key=env_name, value=MASK if is_set else None, source=source, secret=True))
    return out


@router.get("", response_model=SettingsPublic)
def read_settings(cfg: CfgDep) -> SettingsPublic:
    """The effective configuration: every key with its value (secrets masked) and where it came from."""
    return SettingsPublic(config_file=cfg.config_file, settings=effective_settings(cfg))


@router.get("/dashboard", response_model=DashboardPublic)
def read_dashboard(cfg: CfgDep, request: Request) -> DashboardPublic:
    """Configured repos, agent types and workflows, and the Temporal web UI: what the dashboard needs."""
    # the UI `factory up` started (its --ui-port), else the dev server's default port, on the dashboard's host
    ui_port = getattr(request.app.state, "temporal_ui_port", None) or 8233
    ui = cfg.temporal.ui_url or f"{request.url.scheme}://{request.url.hostname}:{ui_port}"
    return DashboardPublic(
        repos=[
            RepoPublic(name=n, github=r.github, default_agent=r.default_agent, default_branch=r.default_branch)
            for n, r in sorted(cfg.repos.items())
        ],
        default_org=cfg.default_org,
        agent_types=sorted(cfg.agent_templates),
        workflows=sorted(workflow_definitions(cfg)),
        message_board=cfg.message_board.enabled,
        memory=cfg.memory.enabled,
        temporal_ui=ui.rstrip("/"),
        namespace=cfg.temporal.namespace,
        task_workflow_id=task_workflow_id(cfg, 0).removesuffix("0") + "{id}",
        run_workflow_id=run_workflow_id(cfg, 0).removesuffix("0") + "{id}",
        repo_example='repos:\n  my-app:\n    url: "https://github.com/your-org/my-app.git"\n    default_agent: coder\n',
    )
