"""The sections of config.yml: one pydantic model per key of `FactoryConfig` that has its own keys.

`factory.config` assembles them into the one `FactoryConfig` and loads it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

AGENT_TYPES = ("coder", "coder_revision", "reviewer", "researcher", "devops")

KNOWN_TOOLS = frozenset(
    "Agent Bash BashOutput Edit ExitPlanMode Glob Grep KillShell LS MultiEdit NotebookEdit NotebookRead Read "
    "Skill SlashCommand Task TodoWrite WebFetch WebSearch Write".split()
)



def _known_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {v!r}") from exc
    return v


TimeZone = Annotated[str, AfterValidator(_known_zone)]
"""An IANA time zone name the machine knows (e.g. `Europe/Berlin`)."""

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrowserScenario(_Model):
    """One browser check against the task's preview: open `path`, run `steps`, want `expect_text`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    path: str = Field(default="/", pattern=r"^/[^\s]*$")  # on the preview's own host only, never a URL
    steps: list[dict[str, str | int]] = Field(default_factory=list)  # {click|fill|expect_text|wait: ...}
    expect_text: str | None = None


class ChecksConfig(_Model):
    """Proof of work (docs/proof-of-work.md): what Factory itself runs on the agent's commit before the PR."""

    test_command: str | None = None  # run in a fresh sandbox on Factory's copy of the commit
    junit: str | None = None  # a glob, inside the copy, of the JUnit XML files the command writes
    preview_compose: str = "docker-compose.preview.yml"
    preview_service: str | None = None
    preview_port: int | None = Field(default=None, ge=1, le=65535)
    browser: list[BrowserScenario] = Field(default_factory=list)
    max_rounds: int = Field(default=2, ge=0, le=10)  # extra agent rounds to fix a failing check
    timeout_minutes: float = Field(default=10, gt=0)
    retention_days: int = Field(default=30, ge=1)


class RepoConfig(_Model):
    url: str
    default_agent: str = "coder"
    github: str | None = Field(default=None, description="owner/name for a clone URL that is not GitHub's")
    default_branch: str | None = None
    checks: ChecksConfig | None = None  # Factory's own checks of the agent's work (proof of work)

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
    max_budget_usd: float | None = Field(default=None, gt=0)  # the most one run of this agent may spend
    backend: Literal["claude", "codex", "opencode"] = "claude"  # which CLI runs it (factory/backends/)

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
    backend: Literal["claude", "codex", "opencode"] | None = None  # overrides the agent template's


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
    # an issue with this label starts a task (agent:<type> / workflow:<name> labels choose what runs)
    trigger_label: str = "factory"
    # `@<handle> <instruction>` in a writer's comment starts work
    mention_handle: str = "factory"
    # fix runs per PR for failed CI (and, separately, for merge conflicts) before a person is asked
    ci_fix_rounds: int = Field(default=2, ge=0)
    # where people open Factory's dashboard (links in issue comments and check runs); empty: no link
    dashboard_url: str = ""
    # report Factory's state as a check run on its PRs' head commits (needs a GitHub App's token)
    check_runs: bool = False


class OidcConfig(_Model):
    """Sign-in by OpenID Connect (`auth.oidc`); the client secret is `OIDC_CLIENT_SECRET` in the environment."""

    issuer: str
    client_id: str
    scopes: str = "openid profile email"
    # the claim whose value becomes the user's login
    login_claim: str = "preferred_username"


class GithubOAuthConfig(_Model):
    """Sign-in with GitHub (`auth.github`); the secret is `GITHUB_OAUTH_CLIENT_SECRET` in the environment."""

    client_id: str
    # empty: github.web_url and github.api_url
    web_url: str = ""
    api_url: str = ""


class AuthConfig(_Model):
    """Who may use the dashboard and the API (docs/auth.md). Nothing set and no FACTORY_AUTH_TOKEN: open."""

    oidc: OidcConfig | None = None
    github: GithubOAuthConfig | None = None
    local: bool = False  # sign-in with a password an admin set
    default_role: Literal["admin", "operator", "viewer"] = "viewer"  # new people from OIDC or GitHub
    admins: list[str] = Field(default_factory=list)  # logins made admin at their first sign-in
    session_hours: float = Field(default=12, gt=0)
    audit_retention_days: float = Field(default=365, ge=0)  # 0: keep the audit log forever
    # where people open Factory (https://factory.example.com); empty: the request's own Host
    public_url: str = ""


class ScheduleConfig(_Model):
    """One entry of `schedules:`: a cron expression, its time zone, and the task or workflow it starts."""

    # five fields (minute hour day-of-month month day-of-week), or @daily, @every 6h, ...
    cron: str = Field(min_length=1, max_length=200, pattern=r"^(@\w+( .+)?|\S+( \S+){4})$")
    timezone: TimeZone = "UTC"
    repo: str = Field(min_length=1)
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    agent_type: str | None = None
    workflow: str | None = None  # a configured workflow's name; else one task of `agent_type`
    paused: bool = False


class TemporalConfig(_Model):
    address: str | None = None
    namespace: str = "default"
    task_queue: str = "factory"
    worker_id: str | None = None
    heartbeat_timeout_seconds: float = 30
    # how long a Factory process waits at start for a reachable, healthy Temporal before it gives up
    connect_timeout_seconds: float = Field(default=60, gt=0)
    id_prefix: str = ""
    # a TLS cluster or Temporal Cloud (docs/deploy.md): TLS on, with a client certificate and key for
    # mTLS (PEM files), or an API key (TEMPORAL_API_KEY in the environment or .env, which turns TLS on)
    tls: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None  # a private CA's certificate (default: the system's roots)
    tls_server_name: str | None = None  # the name the server's certificate carries, if not the address's
    # the Temporal web UI the dashboard links to; unset: port 8233 on the dashboard's host (the dev server's)
    ui_url: str | None = None


class BudgetsConfig(_Model):
    """Spending limits in USD (each optional); the smallest remaining one caps each agent run."""

    per_task_usd: float | None = Field(default=None, gt=0)
    per_workflow_usd: float | None = Field(default=None, gt=0)
    per_repo_daily_usd: float | None = Field(default=None, gt=0)
    daily_usd: float | None = Field(default=None, gt=0)
    timezone: TimeZone = "UTC"  # where a day begins and ends for the daily budgets
    # how often a task held by a daily budget checks whether the day has rolled over
    hold_check_seconds: float = Field(default=300, gt=0)


class WorkersConfig(_Model):
    # a task whose worktree host polls nothing for this long is prepared again on another host
    # from its pushed branch (0: never; the task waits for its host to come back)
    failover_after_seconds: float = Field(default=300, ge=0)
    # `factory worker --drain` / SIGTERM: how long running agents may go on before their work is
    # pushed and they are handed back to the queue for another host
    drain_timeout_seconds: float = Field(default=600, ge=0)


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
    # how long a task's remember step rides out a store outage (retrying) before the memory is let go
    outage_seconds: float = Field(default=40, gt=0, le=3600)


class PreviewsConfig(_Model):
    domain: str = "preview.localhost"
    scheme: str = "https"
    network: str = "factory-previews"
    entrypoint: str = "websecure"
    cert_resolver: str = "letsencrypt"
    max_running: int = 10
    max_copy_mb: int = 200  # what an environment's compose file names is copied once, up to this size
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


class ModelPrice(_Model):
    """USD per million tokens of one model (a `backends.<name>.prices` entry later has this shape)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)  # cache reads; None: the input price
    cache_write_per_mtok: float | None = Field(default=None, ge=0)  # cache writes; None: the input price


def _price(i: float, o: float) -> ModelPrice:  # Anthropic's list prices: reads 0.1x, 5-minute writes 1.25x
    return ModelPrice(input_per_mtok=i, output_per_mtok=o, cached_input_per_mtok=i / 10, cache_write_per_mtok=i * 1.25)


def default_model_prices() -> dict[str, ModelPrice]:
    """By model-name prefix, the longest matching wins; "" prices a model not listed (as the CLI does)."""
    table = {
        "": (5, 25), "claude-opus-4-5": (5, 25), "claude-opus-4-6": (5, 25), "claude-opus-4-7": (5, 25),
        "claude-opus-4-8": (5, 25), "claude-opus-4": (15, 75), "claude-4-opus": (15, 75), "claude-3-opus": (15, 75),
        "claude-sonnet-4": (3, 15), "claude-4-sonnet": (3, 15), "claude-3-7-sonnet": (3, 15),
        "claude-3-5-sonnet": (3, 15), "claude-haiku-4": (1, 5), "claude-3-5-haiku": (0.8, 4),
        "claude-3-haiku": (0.25, 1.25),
    }  # fmt: skip
    return {prefix: _price(i, o) for prefix, (i, o) in table.items()}


class BackendConfig(_Model):
    """`backends.<name>`: one coding CLI (factory/backends/); its upstream key comes from the environment."""

    command: str | None = None  # None: the CLI's own name (claude: claude_command)
    model: str | None = None  # the default model; an agent template's `model` wins
    base_url: str | None = None  # the upstream model API the gateway forwards to (None: the vendor's)
    prices: ModelPrice | None = None  # what the gateway charges this backend's tokens (openai-routed backends)
    extra_args: list[str] = Field(default_factory=list)


class SandboxLimits(_Model):
    """Per-run resource limits (factory/sandbox/limits.py says how each is enforced)."""

    processes: int = Field(default=512, ge=16)
    memory_mb: int = Field(default=4096, ge=64)
    nice: int = Field(default=10, ge=0, le=19)  # agents below Factory's own priority
    file_size_mb: int = Field(default=1024, ge=1)
    cpu_weight: int | None = Field(default=None, ge=1, le=10000)  # cgroup v2 scale (100 = default)
    # every run together against Factory's own processes (cgroup v2 scale): agents never starve the control plane
    agents_cpu_weight: int | None = Field(default=None, ge=1, le=10000)


class SandboxConfig(_Model):
    enabled: bool = True
    network: Literal["allowlist", "host"] = "allowlist"
    # when Factory runs as root the sandbox runs as this unprivileged uid/gid (a dedicated one is better)
    uid: int = Field(default=65534, ge=1)
    gid: int = Field(default=65534, ge=1)
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    allowed_domains: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_DOMAINS))
    # the egress proxy's limits, per connection and per run
    max_connections: int = Field(default=64, ge=1)
    proxy_head_seconds: float = Field(default=10, gt=0)
    proxy_idle_seconds: float = Field(default=300, gt=0)
    proxy_total_seconds: float = Field(default=3600, gt=0)
    # what the model gateway charges each run, from the model server's own token counts
    model_prices: dict[str, ModelPrice] = Field(default_factory=default_model_prices)

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
