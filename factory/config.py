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
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from factory.config_sections import (
    AGENT_TYPES,
    AgentTemplate,
    AuthConfig,
    BackendConfig,
    BudgetsConfig,
    GithubConfig,
    MemoryConfig,
    MessageBoardConfig,
    PlaneConfig,
    PreviewsConfig,
    RepoConfig,
    SandboxConfig,
    ScheduleConfig,
    TelegramConfig,
    TemporalConfig,
    WorkersConfig,
    WorkflowConfig,
    default_templates,
)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
"""The directory that holds Factory's own `prompts/`, `config.yml` and packages."""


class ConfigError(Exception):
    """config.yml is invalid; the message names the file and the key."""


SECRET_FIELDS = frozenset(
    "anthropic_api_key github_token factory_auth_token plane_api_key telegram_bot_token surrealdb_url surrealdb_user "
    "surrealdb_pass openai_api_key temporal_api_key oidc_client_secret github_oauth_client_secret".split()
)
"""Settings read only from the environment or `.env`, never from config.yml: the one list of Factory's secrets."""

SECRET_ENV_NAMES = frozenset({name.upper() for name in SECRET_FIELDS} | {"GH_TOKEN"})
"""Environment variables holding Factory's secrets (GH_TOKEN: the gh CLI's name for the GitHub token)."""

SECRET_NAME_PATTERN = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|_PASS$|_KEY$|CREDENTIAL|^GIT_CONFIG_", re.I)
"""Names of environment variables that look like someone's secret, Factory's or not."""


def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name holds (or looks like it holds) a secret."""
    return name.upper() in SECRET_ENV_NAMES or bool(SECRET_NAME_PATTERN.search(name))


class FactoryConfig(BaseSettings):
    """Everything Factory reads: config.yml keys plus secrets from the environment."""

    # an empty variable (`FACTORY_AUTH_TOKEN=` in .env) means unset, never an empty secret
    model_config = SettingsConfigDict(env_file=".env", extra="forbid", env_nested_delimiter="__", env_ignore_empty=True)

    # --- config.yml ---
    max_concurrent_agents: int = Field(default=3, ge=1)
    agent_timeout_minutes: float = Field(default=60, gt=0)
    agent_activity_timeout_minutes: float = Field(default=15, gt=0)
    clarification_timeout_hours: float = Field(default=72, gt=0)
    # logs, board messages, webhook deliveries and dedup marks of finished work older than this are pruned
    retention_days: float = Field(default=30, ge=0)  # 0: keep everything forever
    default_org: str = ""
    repos: dict[str, RepoConfig] = Field(default_factory=dict)
    agent_templates: dict[str, AgentTemplate] = Field(default_factory=default_templates)
    message_board: MessageBoardConfig = Field(default_factory=MessageBoardConfig)
    workflows: dict[str, WorkflowConfig] = Field(default_factory=dict)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    plane: PlaneConfig = Field(default_factory=PlaneConfig)
    github: GithubConfig = Field(default_factory=GithubConfig)
    temporal: TemporalConfig = Field(default_factory=TemporalConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    previews: PreviewsConfig = Field(default_factory=PreviewsConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)  # people, roles, sign-in (docs/auth.md)
    schedules: dict[str, ScheduleConfig] = Field(default_factory=dict)  # name -> a Temporal Schedule
    backends: dict[Literal["claude", "codex", "opencode"], BackendConfig] = Field(default_factory=dict)
    claude_command: str = "claude"
    workspace_root: str = "./workspaces"
    data_dir: str = "./data"
    database_url: str | None = None
    git_author_name: str = "Factory"
    git_author_email: str = "factory@localhost"
    # the largest request body the API and the webhooks take (413 above it, before it is read)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # --- secrets (environment / .env only; never in config output): the names in SECRET_FIELDS ---
    anthropic_api_key: SecretStr | None = None
    github_token: SecretStr | None = None
    factory_auth_token: SecretStr | None = None
    plane_api_key: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    surrealdb_url: str | None = None
    surrealdb_user: str | None = None
    surrealdb_pass: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    temporal_api_key: SecretStr | None = None  # Temporal Cloud's API key (temporal.* in docs/deploy.md)
    oidc_client_secret: SecretStr | None = None  # auth.oidc's client secret
    github_oauth_client_secret: SecretStr | None = None  # auth.github's client secret

    # where this config came from; set by load_config, and the file the YAML source reads
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
        # highest first: secrets from the environment, then .env, then load_config's overrides, then config.yml
        sources = [_SecretsOnly(env_settings), _SecretsOnly(dotenv_settings), init_settings]
        config_file = getattr(init_settings, "init_kwargs", {}).get("config_file")
        if config_file:
            sources.append(_ConfigFile(settings_cls, Path(config_file)))
        return tuple(sources)

    @model_validator(mode="after")
    def _check_references(self) -> FactoryConfig:
        for name in self.agent_templates:
            if name not in AGENT_TYPES:
                raise ValueError(f"agent_templates.{name}: unknown agent type (known: {', '.join(AGENT_TYPES)})")
        for name, repo in self.repos.items():
            if repo.default_agent not in self.agent_templates:
                raise ValueError(f"repos.{name}.default_agent: unknown agent type {repo.default_agent!r}")
        for wf_name, wf in self.workflows.items():
            validate_workflow(wf_name, wf, set(self.agent_templates))
        for name, sched in self.schedules.items():
            if sched.workflow and sched.workflow not in self.workflows:
                raise ValueError(f"schedules.{name}.workflow: unknown workflow {sched.workflow!r}")
            if sched.agent_type and sched.agent_type not in self.agent_templates:
                raise ValueError(f"schedules.{name}.agent_type: unknown agent type {sched.agent_type!r}")
        if self.plane.default_repo and self.plane.default_repo not in self.repos and "/" not in self.plane.default_repo:
            if not self.default_org:
                raise ValueError("plane.default_repo: not a configured repo and no default_org is set")
        return self

    # --- derived values ---
    @property
    def base_dir(self) -> Path:
        """The directory relative paths are resolved against: the config file's, else the working directory."""
        return Path(self.config_file).resolve().parent if self.config_file else Path.cwd()

    def path(self, value: str) -> Path:
        """`value` as an absolute path, relative ones resolved against `base_dir`."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def data_path(self) -> Path:
        """The data directory (database, memory, run files)."""
        return self.path(self.data_dir)

    @property
    def workspace_path(self) -> Path:
        """The directory that holds the per-repo mirrors and per-task worktrees."""
        return self.path(self.workspace_root)

    @property
    def db_url(self) -> str:
        """`database_url`, else a SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_path / 'factory.db'}"

    def prompt_path(self, value: str) -> Path:
        """A prompt file: relative to the config file, else to Factory's own tree."""
        p = self.path(value)
        if p.exists():
            return p
        fallback = PACKAGE_ROOT / value
        return fallback if fallback.exists() else p

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for scrubbing text before it is stored or sent."""
        vals = [getattr(self, name) for name in sorted(SECRET_FIELDS)]
        vals = [v.get_secret_value() for v in vals if isinstance(v, SecretStr)]
        vals += [self.telegram.bot_token, self.plane.api_key, self.plane.webhook_secret]
        vals += [self.github.webhook_secret, self.telegram.webhook_secret]
        return [v for v in vals if v and len(v) >= 6]

    def secrets_in_force(self) -> dict[str, bool]:
        """Each secret's environment variable name and whether it is set (an empty value counts as unset)."""
        return {name.upper(): getattr(self, name) is not None for name in sorted(SECRET_FIELDS)}

    @property
    def telegram_token(self) -> str:
        """The Telegram bot token: `TELEGRAM_BOT_TOKEN`, else `telegram.bot_token`."""
        return self.telegram_bot_token.get_secret_value() if self.telegram_bot_token else self.telegram.bot_token

    @property
    def plane_key(self) -> str:
        """The Plane API key: `PLANE_API_KEY`, else `plane.api_key`."""
        return self.plane_api_key.get_secret_value() if self.plane_api_key else self.plane.api_key


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


class _ConfigFile(YamlConfigSettingsSource):
    """config.yml through pydantic-settings' YAML source, refusing what cannot be a config file."""

    def __init__(self, settings_cls: type[BaseSettings], file: Path):
        self.file = file
        super().__init__(settings_cls, yaml_file=file)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.file}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.file}: the top level must be a mapping of keys")
        bad = sorted(SECRET_FIELDS & set(data))
        if bad:
            raise ConfigError(f"{self.file}: {bad[0]}: secrets belong in the environment or .env, not config.yml")
        return data


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

    Args:
        path: the config file; default `FACTORY_CONFIG`, else `config.yml`. A missing file means
            all defaults, unless `FACTORY_CONFIG` names it.
        **overrides: settings that take precedence over the file's.

    Raises:
        ConfigError: naming the file and the key when anything is invalid.
    """
    if path is None:
        path = os.environ.get("FACTORY_CONFIG") or "config.yml"
    file = Path(path).expanduser().resolve()
    if not file.exists() and os.environ.get("FACTORY_CONFIG"):
        raise ConfigError(f"{file}: config file not found")
    try:
        cfg = FactoryConfig(**overrides, config_file=str(file))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, str(file))) from exc
    files = [(f"agent_templates.{n}.system_prompt_file", t.system_prompt_file) for n, t in cfg.agent_templates.items()]
    files += [
        (f"workflows.{n}.steps[{i}].prompt_template", step.prompt_template)
        for n, wf in cfg.workflows.items()
        for i, step in enumerate(wf.steps)
        if step.prompt_template
    ]
    for key, value in files:
        if not cfg.prompt_path(value).exists():
            raise ConfigError(f"{file}: {key}: no such file {value}")
    return cfg
