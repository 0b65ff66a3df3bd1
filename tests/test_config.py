"""Unit tests: workflow definitions refused at load, agent templates on the CLI, review verdicts, conditions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from activities.agent import AgentActivities
from factory.config import SECRET_ENV_NAMES, ConfigError, is_secret_name, load_config
from factory.contracts import AgentRequest, RepoRef
from factory.domain.handoffs import render_template
from factory.domain.review import condition_met, format_issues, parse_verdict
from factory.launcher import LaunchError
from factory.specs import agent_spec, builtin_workflows, workflow_definitions, workflow_input
from factory.store.board import Board
from factory.store.tables import WorkflowRun, make_engine

pytestmark = pytest.mark.fast  # unit tests: no Temporal, no CLI

ROOT = Path(__file__).resolve().parent.parent
GOOD_STEPS = """\
      - agent: coder
        output: code
      - agent: reviewer
        input: code
        output: review
      - agent: coder_revision
        input: review
        output: revision
        condition: has_issues
        loop_to: review
        prompt_template: prompts/templates/review_to_address.md
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    return path, load_config(path)


def _workflow(steps: str, extra: str = "") -> str:
    return f"workflows:\n  wf:\n{extra}    steps:\n{steps}"


# --- workflow definitions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps, extra, fragment",
    [
        (GOOD_STEPS.replace("loop_to: review", "loop_to: reveiw"), "",
         "workflows.wf.steps[2].loop_to: 'reveiw' is not the output of an earlier step"),
        (GOOD_STEPS.replace("input: code", "input: cod"), "",
         "workflows.wf.steps[1].input: 'cod' is not the output of an earlier step"),
        (GOOD_STEPS.replace("agent: reviewer", "agent: critic"), "", "workflows.wf.steps[1].agent: unknown agent type 'critic'"),
        (GOOD_STEPS.replace("condition: has_issues", "condition: has_bugs"), "", "workflows.wf.steps.2.condition"),
        (GOOD_STEPS.replace("output: code", "outptu: code"), "", "workflows.wf.steps.0.outptu: unknown key"),
        (GOOD_STEPS.replace("output: revision", "output: review"), "",
         "workflows.wf.steps[2].output: 'review' is already the output of an earlier step"),
        ("      - agent: coder\n        condition: no_issues\n", "",
         "workflows.wf.steps[0].condition: the first step has no earlier review"),
        # a loop must jump back, never forward
        ("      - agent: coder\n        loop_to: later\n      - agent: reviewer\n        output: later\n", "",
         "workflows.wf.steps[0].loop_to: 'later' is not the output of an earlier step"),
        (GOOD_STEPS.replace("prompts/templates/review_to_address.md", "prompts/missing.md"), "",
         "workflows.wf.steps[2].prompt_template: no such file prompts/missing.md"),
        (GOOD_STEPS, "    max_iterations: 0\n", "workflows.wf.max_iterations"),
        ("      []\n", "", "workflows.wf.steps"),
    ],
)  # fmt: skip
def test_invalid_workflow_definitions_are_refused_at_load_naming_step_and_key(tmp_path, steps, extra, fragment):
    path = tmp_path / "config.yml"
    path.write_text(_workflow(steps, extra))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_a_valid_custom_workflow_loads_and_is_offered_next_to_the_builtin_code_review(tmp_path):
    _, cfg = _load(tmp_path, _workflow(GOOD_STEPS, "    max_iterations: 2\n"))
    wf = cfg.workflows["wf"]
    assert wf.max_iterations == 2 and [s.agent for s in wf.steps] == ["coder", "reviewer", "coder_revision"]
    assert set(workflow_definitions(cfg)) == {"wf", "code_review"}


def test_the_shipped_code_review_matches_the_builtin_one():
    cfg = load_config(ROOT / "config.yml")
    shipped = cfg.workflows["code_review"]
    assert shipped == builtin_workflows(cfg)["code_review"].model_copy(update={"description": ""})
    assert [s.agent for s in shipped.steps] == ["coder", "reviewer", "coder_revision"]


def test_workflow_input_resolves_agents_and_template_text(tmp_path):
    _, cfg = _load(tmp_path, _workflow(GOOD_STEPS))
    run = WorkflowRun(id=7, name="wf", title="T", description="D", repo="demo")
    inp = workflow_input(cfg, run, cfg.workflows["wf"], RepoRef(name="demo", url="https://github.com/a/b.git"))
    assert [s.agent.agent_type for s in inp.steps] == ["coder", "reviewer", "coder_revision"]
    assert inp.steps[1].agent.tools == ["Read", "Glob", "Grep"]
    assert "{issues}" in inp.steps[2].prompt_template and inp.steps[2].prompt_template_file.endswith(
        "review_to_address.md"
    )
    assert (inp.run_id, inp.max_iterations, inp.steps[2].loop_to, inp.steps[2].condition) == (
        7,
        3,
        "review",
        "has_issues",
    )
    cfg.workflows["wf"].steps[2].prompt_template = "prompts/gone.md"  # deleted after load
    with pytest.raises(LaunchError, match=r"steps\[2\].prompt_template"):
        workflow_input(cfg, run, cfg.workflows["wf"], RepoRef(name="demo", url="u"))


# --- the environment ------------------------------------------------------------------------------


def test_an_empty_variable_means_unset_for_every_secret(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FACTORY_AUTH_TOKEN=\nPLANE_API_KEY=plane-key-from-dotenv\nSURREALDB_URL=\n")
    monkeypatch.setenv("PLANE_API_KEY", "")  # empty in the environment: .env's value stands
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-from-the-environment")
    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    cfg = load_config(tmp_path / "config.yml")
    assert cfg.factory_auth_token is None and cfg.openai_api_key is None and cfg.surrealdb_url is None
    assert cfg.plane_key == "plane-key-from-dotenv"
    assert cfg.github_token is not None and cfg.github_token.get_secret_value() == "ghp-from-the-environment"
    in_force = cfg.secrets_in_force()
    assert in_force["FACTORY_AUTH_TOKEN"] is False and in_force["GITHUB_TOKEN"] is True
    assert set(in_force) <= SECRET_ENV_NAMES
    monkeypatch.setenv("FACTORY_AUTH_TOKEN", "a-real-token")
    assert load_config(tmp_path / "config.yml").factory_auth_token.get_secret_value() == "a-real-token"


def test_config_yml_is_read_through_the_settings_source_with_overrides_on_top(tmp_path):
    path, cfg = _load(tmp_path, "max_concurrent_agents: 2\nmemory:\n  top_k: 3\n")
    assert (cfg.max_concurrent_agents, cfg.memory.top_k, cfg.config_file) == (2, 3, str(path))
    over = load_config(path, max_concurrent_agents=5)
    assert (over.max_concurrent_agents, over.memory.top_k) == (5, 3)
    (tmp_path / "bad.yml").write_text("memory: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(tmp_path / "bad.yml")
    assert str(tmp_path / "bad.yml") in str(err.value)


def test_secret_environment_names_are_defined_once_from_the_settings():
    assert {"FACTORY_AUTH_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "OPENAI_API_KEY", "SURREALDB_PASS"} <= SECRET_ENV_NAMES
    assert is_secret_name("SOME_VENDOR_API_KEY") and is_secret_name("gh_token") and not is_secret_name("HOME")


# --- agent templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("agent_templates:\n  tester:\n    system_prompt_file: prompts/coder.md\n", "agent_templates.tester: unknown agent type"),
        ("agent_templates:\n  reviewer:\n    system_prompt_file: prompts/reviewer.md\n    allowed_tools: [Read, Fly]\n",
         "agent_templates.reviewer.allowed_tools: unknown tool 'Fly'"),
    ],
)  # fmt: skip
def test_unknown_agent_types_and_tools_are_refused(tmp_path, text, fragment):
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_template_model_max_turns_and_extra_args_reach_the_cli(tmp_path):
    _, cfg = _load(
        tmp_path,
        """\
        agent_templates:
          researcher:
            system_prompt_file: prompts/researcher.md
            allowed_tools: [WebSearch, WebFetch, Read]
            model: claude-haiku-4-5
            max_turns: 7
            extra_args: ["--permission-mode", "acceptEdits"]
        """,
    )
    spec = agent_spec(cfg, "researcher")
    acts = AgentActivities(
        cfg, make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"), Board(make_engine("sqlite://")), "h"
    )
    req = AgentRequest(task_id=1, agent=spec, cwd=str(tmp_path), prompt="p", session_id="s-1")
    cmd = acts._command(req, resume=False)
    assert cmd[cmd.index("--tools") + 1] == "WebSearch,WebFetch,Read"
    assert cmd[cmd.index("--model") + 1] == "claude-haiku-4-5"
    assert cmd[cmd.index("--max-turns") + 1] == "7"
    assert cmd[-2:] == ["--permission-mode", "acceptEdits"]
    assert cmd[cmd.index("--session-id") + 1] == "s-1"
    resumed = acts._command(req, resume=True)
    assert resumed[resumed.index("--resume") + 1] == "s-1" and "--session-id" not in resumed


# --- review verdicts -----------------------------------------------------------------------------


def test_verdict_in_a_fenced_block_after_prose_with_braces():
    text = (
        "I read `def f(): return {}` and {this} too.\n\n```json\n"
        '{"verdict": "changes_requested", "issues": [{"severity": "Major", "file": "a.py", "comment": "fix {x}"}]}\n```'
    )
    review = parse_verdict(text)
    assert review is not None and review.verdict == "changes_requested" and not review.approved
    assert review.issues == [{"severity": "major", "file": "a.py", "comment": "fix {x}"}]


def test_the_last_object_with_a_verdict_wins_and_protocol_lines_after_it_are_ignored():
    text = (
        '{"verdict": "changes_requested", "issues": []}\nOn second thought:\n'
        '{"verdict": "approved", "issues": [{"severity": "nit", "comment": "naming"}]}\n'
        '{"type": "learning", "content": "tests need make db"}'
    )
    review = parse_verdict(text)
    assert review is not None and review.approved and review.issues[0]["severity"] == "nit"


@pytest.mark.parametrize(
    "text, verdict",
    [
        ('{"verdict": "approve"}', "approved"),
        ('{"verdict": "LGTM", "issues": []}', "approved"),
        ('{"verdict": "request_changes", "issues": "one string issue"}', "changes_requested"),
        ('{"verdict": "maybe"}', None),
        ('{"issues": []}', None),
        ('{"verdict": "approved", "issues": [}', None),
        ("no JSON at all", None),
        ("", None),
    ],
)
def test_verdict_parsing_is_robust(text, verdict):
    review = parse_verdict(text)
    assert (review.verdict if review else None) == verdict


def test_issues_are_normalised():
    review = parse_verdict(
        '{"verdict": "request_changes", "issues": ["plain text", {"comment": "c", "severity": "??"}, 3]}'
    )
    assert review is not None
    assert [(i["severity"], i["comment"]) for i in review.issues] == [("major", "plain text"), ("major", "c")]


@pytest.mark.parametrize(
    "condition, verdict, severities, expected",
    [
        ("has_issues", "changes_requested", ["major"], True),
        ("has_issues", "changes_requested", ["blocker", "nit"], True),
        ("has_issues", "changes_requested", ["minor", "nit"], False),
        ("has_issues", None, None, False),
        ("no_issues", "approved", ["minor"], True),
        ("no_issues", "changes_requested", ["blocker"], False),
        ("no_issues", None, None, True),
        ("review_approved", "approved", ["major"], True),
        ("review_approved", "changes_requested", [], False),
        ("review_approved", None, None, False),
        (None, None, None, True),
    ],
)
def test_conditions(condition, verdict, severities, expected):
    issues = None if severities is None else [{"severity": s, "comment": "x"} for s in severities]
    assert condition_met(condition, verdict, issues) is expected


def test_issues_are_quoted_word_for_word_and_templates_keep_other_braces():
    issues = [
        {"severity": "major", "file": "a.py", "line": 3, "comment": "Use {name}, not `x`!"},
        {"severity": "nit", "comment": "typo"},
    ]
    text = format_issues(issues)
    assert text == "- [major] a.py:3: Use {name}, not `x`!\n- [nit] general: typo"
    out = render_template(
        "Fix:\n{issues}\nKeep {unknown} and {{braces}}. Title: {title}", {"issues": text, "title": "T"}
    )
    assert out == f"Fix:\n{text}\nKeep {{unknown}} and {{{{braces}}}}. Title: T"
