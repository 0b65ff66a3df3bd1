"""Factory configuration: config.yml plus secrets from `.env` and the environment.

One `Settings` object holds everything. config.yml (or the file named by
`FACTORY_CONFIG`) is a settings source; secrets come from the environment or `.env`
and are never written back anywhere. Relative paths in config.yml are resolved
against the directory of the config file, and prompt files fall back to the
`prompts/` directory shipped with Factory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
"""The directory that holds Factory's own `prompts/`, `config.yml` and packages."""

AGENT_TYPES = ("coder", "coder_revision", "reviewer", "researcher", "devops")

KNOWN_TOOLS = frozenset(
    {
        "Agent",
        "Bash",
        "BashOutput",
        "Edit",
        "ExitPlanMode",
        "Glob",
        "Grep",
        "KillShell",
        "LS",
        "MultiEdit",
        "NotebookEdit",
        "NotebookRead",
        "Read",
        "Skill",
        "SlashCommand",
        "Task",
        "TodoWrite",
        "WebFetch",
        "WebSearch",
        "Write",
    }
)

CONDITIONS = ("has_issues", "no_issues", "review_approved")


class ConfigError(Exception):
    """config.yml is invalid; the message names the file and the key."""


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


def _default_templates() -> dict[str, AgentTemplate]:
    rw = ["Read", "Edit", "Write", "Bash", "Glob", "Grep"]
    return {
        "coder": AgentTemplate(system_prompt_file="prompts/coder.md", allowed_tools=rw, timeout_minutes=60),
        "coder_revision": AgentTemplate(
            system_prompt_file="prompts/coder_revision.md", allowed_tools=rw, timeout_minutes=60
        ),
        "reviewer": AgentTemplate(
            system_prompt_file="prompts/reviewer.md", allowed_tools=["Read", "Glob", "Grep"], timeout_minutes=30
        ),
        "researcher": AgentTemplate(
            system_prompt_file="prompts/researcher.md",
            allowed_tools=["WebSearch", "WebFetch", "Read"],
            timeout_minutes=30,
        ),
        "devops": AgentTemplate(
            system_prompt_file="prompts/devops.md", allowed_tools=["Bash", "Read", "Edit"], timeout_minutes=30
        ),
    }


class FactoryConfig(BaseSettings):
    """Everything Factory reads: config.yml keys plus secrets from the environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="forbid", env_nested_delimiter="__")

    # --- config.yml ---
    max_concurrent_agents: int = Field(default=3, ge=1)
    agent_timeout_minutes: float = Field(default=60, gt=0)
    agent_activity_timeout_minutes: float = Field(default=15, gt=0)
    clarification_timeout_hours: float = Field(default=72, gt=0)
    default_org: str = ""
    repos: dict[str, RepoConfig] = Field(default_factory=dict)
    agent_templates: dict[str, AgentTemplate] = Field(default_factory=_default_templates)
    message_board: MessageBoardConfig = Field(default_factory=MessageBoardConfig)
    workflows: dict[str, WorkflowConfig] = Field(default_factory=dict)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    plane: PlaneConfig = Field(default_factory=PlaneConfig)
    github: GithubConfig = Field(default_factory=GithubConfig)
    temporal: TemporalConfig = Field(default_factory=TemporalConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    previews: PreviewsConfig = Field(default_factory=PreviewsConfig)
    claude_command: str = "claude"
    workspace_root: str = "./workspaces"
    data_dir: str = "./data"
    database_url: str | None = None
    git_author_name: str = "Factory"
    git_author_email: str = "factory@localhost"

    # --- secrets (environment / .env only; never in config output) ---
    anthropic_api_key: SecretStr | None = None
    github_token: SecretStr | None = None
    factory_auth_token: SecretStr | None = None
    plane_api_key: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    surrealdb_url: str | None = None
    surrealdb_user: str | None = None
    surrealdb_pass: SecretStr | None = None
    openai_api_key: SecretStr | None = None

    # where this config came from; set by load_config
    config_file: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the parsed config.yml; only secrets come from the environment
        return (_SecretsOnly(env_settings), _SecretsOnly(dotenv_settings), init_settings)

    @model_validator(mode="after")
    def _check_references(self) -> FactoryConfig:
        for name, tpl in self.agent_templates.items():
            if name not in AGENT_TYPES:
                raise ValueError(f"agent_templates.{name}: unknown agent type (known: {', '.join(AGENT_TYPES)})")
            del tpl
        for name, repo in self.repos.items():
            if repo.default_agent not in self.agent_templates:
                raise ValueError(f"repos.{name}.default_agent: unknown agent type {repo.default_agent!r}")
        for wf_name, wf in self.workflows.items():
            validate_workflow(wf_name, wf, set(self.agent_templates))
        if self.plane.default_repo and self.plane.default_repo not in self.repos and "/" not in self.plane.default_repo:
            if not self.default_org:
                raise ValueError("plane.default_repo: not a configured repo and no default_org is set")
        return self

    # --- derived values ---
    @property
    def base_dir(self) -> Path:
        return Path(self.config_file).resolve().parent if self.config_file else Path.cwd()

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    @property
    def workspace_path(self) -> Path:
        return self.path(self.workspace_root)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'factory.store.tables'}"

    def prompt_path(self, value: str) -> Path:
        """A prompt file: relative to the config file, else to Factory's own tree."""
        p = self.path(value)
        if p.exists():
            return p
        fallback = PACKAGE_ROOT / value
        return fallback if fallback.exists() else p

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for scrubbing text before it is stored or sent."""
        vals = [
            s.get_secret_value()
            for s in (
                self.anthropic_api_key,
                self.github_token,
                self.factory_auth_token,
                self.plane_api_key,
                self.telegram_bot_token,
                self.surrealdb_pass,
                self.openai_api_key,
            )
            if s is not None
        ]
        vals += [self.telegram.bot_token, self.plane.api_key, self.plane.webhook_secret, self.github.webhook_secret]
        vals += [self.telegram.webhook_secret]
        return [v for v in vals if v and len(v) >= 6]

    @property
    def telegram_token(self) -> str:
        return self.telegram_bot_token.get_secret_value() if self.telegram_bot_token else self.telegram.bot_token

    @property
    def plane_key(self) -> str:
        return self.plane_api_key.get_secret_value() if self.plane_api_key else self.plane.api_key


SECRET_FIELDS = frozenset(
    {
        "anthropic_api_key",
        "github_token",
        "factory_auth_token",
        "plane_api_key",
        "telegram_bot_token",
        "surrealdb_url",
        "surrealdb_user",
        "surrealdb_pass",
        "openai_api_key",
    }
)


class _SecretsOnly(PydanticBaseSettingsSource):
    """Wraps an env/dotenv source so that only secret fields are read from it."""

    def __init__(self, inner: PydanticBaseSettingsSource):
        super().__init__(inner.settings_cls)
        self.inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        try:
            data = self.inner()
        except Exception:  # an unreadable .env must not take precedence over a clear error
            return {}
        return {k: v for k, v in data.items() if k in SECRET_FIELDS}


def validate_workflow(name: str, wf: WorkflowConfig, agent_types: set[str]) -> None:
    """Check a workflow definition; raise ValueError naming the step and key."""
    outputs: list[str] = []
    for i, step in enumerate(wf.steps):
        where = f"workflows.{name}.steps[{i}]"
        if step.agent not in agent_types:
            raise ValueError(f"{where}.agent: unknown agent type {step.agent!r}")
        if step.input is not None and step.input not in outputs:
            raise ValueError(f"{where}.input: {step.input!r} is not the output of an earlier step")
        if step.loop_to is not None and step.loop_to not in outputs:
            raise ValueError(f"{where}.loop_to: {step.loop_to!r} is not the output of an earlier step")
        if step.output is not None:
            if step.output in outputs:
                raise ValueError(f"{where}.output: {step.output!r} is already the output of an earlier step")
            outputs.append(step.output)
        if i == 0 and step.condition is not None:
            raise ValueError(f"{where}.condition: the first step has no earlier review to test")


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> FactoryConfig:
    """Load config.yml (or `FACTORY_CONFIG`) and the environment into one FactoryConfig.

    Raises:
        ConfigError: naming the file and the key when anything is invalid.
    """
    if path is None:
        path = os.environ.get("FACTORY_CONFIG") or "config.yml"
    file = Path(path).expanduser().resolve()
    data: dict[str, Any] = {}
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of keys")
        data = loaded
    elif os.environ.get("FACTORY_CONFIG") or overrides.get("_require_file"):
        raise ConfigError(f"{file}: config file not found")
    overrides.pop("_require_file", None)
    data.update(overrides)
    data["config_file"] = str(file)
    bad = SECRET_FIELDS & (set(data) - set(overrides))
    if bad:
        raise ConfigError(f"{file}: {sorted(bad)[0]}: secrets belong in the environment or .env, not config.yml")
    try:
        cfg = FactoryConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, str(file))) from exc
    for name, tpl in cfg.agent_templates.items():
        if not cfg.prompt_path(tpl.system_prompt_file).exists():
            raise ConfigError(f"{file}: agent_templates.{name}.system_prompt_file: no such file {tpl.system_prompt_file}")
    for name, wf in cfg.workflows.items():
        for i, step in enumerate(wf.steps):
            if step.prompt_template and not cfg.prompt_path(step.prompt_template).exists():
                raise ConfigError(f"{file}: workflows.{name}.steps[{i}].prompt_template: no such file {step.prompt_template}")
    return cfg
