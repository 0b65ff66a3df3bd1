"""The sections of config.yml: one pydantic model per key of `FactoryConfig` that has its own keys.

`factory.config` assembles them into the one `FactoryConfig` and loads it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AGENT_TYPES = ("coder", "coder_revision", "reviewer", "researcher", "devops")

KNOWN_TOOLS = frozenset(
    "Agent Bash BashOutput Edit ExitPlanMode Glob Grep KillShell LS MultiEdit NotebookEdit NotebookRead Read "
    "Skill SlashCommand Task TodoWrite WebFetch WebSearch Write".split()
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoConfig(_Model):
    url: str
    default_agent: str = "coder"
    github: str | None = Field(default=None, description="owner/name for a clone URL that is not GitHub's")
    default_branch: str | None = None

    @field_validator("github")
    @classmethod
    def _owner_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", v):
            raise ValueError("must be owner/name")
        return v


class AgentTemplate(_Model):
    system_prompt_file: str
    allowed_tools: list[str] = Field(default_factory=list)
    timeout_minutes: float | None = None
    model: str | None = None
    max_turns: int | None = None
    extra_args: list[str] = Field(default_factory=list)

    @field_validator("allowed_tools")
    @classmethod
    def _known_tools(cls, tools: list[str]) -> list[str]:
        for tool in tools:
            base = tool.split("(", 1)[0]
            if base not in KNOWN_TOOLS and not base.startswith("mcp__"):
                raise ValueError(f"unknown tool {tool!r}")
        return tools


class MessageBoardConfig(_Model):
    enabled: bool = True
    telegram_forward: bool = True
    telegram_chat_id: str = ""
    forward_types: list[Literal["info", "question", "handoff", "status", "error"]] = Field(
        default_factory=lambda: ["error", "question", "handoff"]
    )


class WorkflowStep(_Model):
    agent: str
    input: str | None = None
    output: str | None = None
    condition: Literal["has_issues", "no_issues", "review_approved"] | None = None
    loop_to: str | None = None
    prompt_template: str | None = None


class WorkflowConfig(_Model):
    description: str = ""
    max_iterations: int = Field(default=3, ge=1)
    steps: list[WorkflowStep] = Field(min_length=1)


class TelegramConfig(_Model):
    bot_token: str = ""
    chat_id: str = ""
    allowed_chat_ids: list[str] = Field(default_factory=list)
    api_url: str = "https://api.telegram.org"
    webhook_secret: str = ""
    polling: bool = True


class PlaneConfig(_Model):
    base_url: str = ""
    api_key: str = ""
    workspace_slug: str = ""
    project_id: str = ""
    default_repo: str = ""
    webhook_secret: str = ""
    allow_unsigned: bool = False
    states: dict[str, str] = Field(default_factory=dict)


class GithubConfig(_Model):
    api_url: str = "https://api.github.com"
    web_url: str = "https://github.com"
    webhook_secret: str = ""
    pr_poll_minutes: float = 10
    # logins whose reviews drive revisions besides the repo's owners, members and collaborators
    allowed_users: list[str] = Field(default_factory=list)


class TemporalConfig(_Model):
    address: str | None = None
    namespace: str = "default"
    task_queue: str = "factory"
    worker_id: str | None = None
    heartbeat_timeout_seconds: float = 30
    id_prefix: str = ""


class EmbeddingsConfig(_Model):
    base_url: str = "https://api.openai.com/v1"
    model: str = "text-embedding-3-small"
    dimensions: int | None = None
    api_key_env: str = "OPENAI_API_KEY"


class MemoryConfig(_Model):
    enabled: bool = True
    top_k: int = Field(default=5, ge=1)
    max_prompt_chars: int = 4000
    embeddings: EmbeddingsConfig | None = None


class PreviewsConfig(_Model):
    domain: str = "preview.localhost"
    scheme: str = "https"
    network: str = "factory-previews"
    entrypoint: str = "websecure"
    cert_resolver: str = "letsencrypt"
    max_running: int = 10
    max_age_hours: float = 72
    janitor_interval_minutes: float = 5
    default_memory: str = "512m"
    default_cpus: float = 1.0


DEFAULT_ALLOWED_DOMAINS = (
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "pypi.org",
    "files.pythonhosted.org",
    "deb.debian.org",
    "security.debian.org",
    "proxy.golang.org",
    "sum.golang.org",
    "index.crates.io",
    "static.crates.io",
    "rubygems.org",
    "repo.maven.apache.org",
)
"""Hosts a sandboxed agent may reach on ports 80 and 443 unless `sandbox.allowed_domains` says otherwise."""


class SandboxConfig(_Model):
    enabled: bool = True
    network: Literal["allowlist", "host"] = "allowlist"
    allowed_domains: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_DOMAINS))

    @field_validator("allowed_domains")
    @classmethod
    def _host_ports(cls, entries: list[str]) -> list[str]:
        pattern = r"(\*\.)?[A-Za-z0-9_.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?"
        for entry in entries:
            if not re.fullmatch(pattern, entry):
                raise ValueError(f"{entry!r}: want host, host:port, *.domain or [v6]:port")
        return entries


def default_templates() -> dict[str, AgentTemplate]:
    rw = ["Read", "Edit", "Write", "Bash", "Glob", "Grep"]
    table = {  # agent type: (tools, timeout in minutes)
        "coder": (rw, 60),
        "coder_revision": (rw, 60),
        "reviewer": (["Read", "Glob", "Grep"], 30),
        "researcher": (["WebSearch", "WebFetch", "Read"], 30),
        "devops": (["Bash", "Read", "Edit"], 30),
    }
    return {
        name: AgentTemplate(system_prompt_file=f"prompts/{name}.md", allowed_tools=tools, timeout_minutes=minutes)
        for name, (tools, minutes) in table.items()
    }
