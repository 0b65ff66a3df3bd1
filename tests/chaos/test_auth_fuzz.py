"""Schemathesis over the people, token and audit routes only, against a real API server (no Temporal needed).

The whole-API fuzz (test_api_fuzz.py) runs out of its time budget before it reaches these routes on a
busy machine; this one gives each of them its examples: no 5xx, and no answer the document does not
describe, for valid and invalid input, as the bootstrap admin.
"""

from __future__ import annotations

import re
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup

from tests.auth_harness import BEARER, factory_site

pytestmark = pytest.mark.chaos

SEED = 20_261_204
EXAMPLES = 30
OURS = re.compile(r"^/api/(users|me|tokens|audit|auth)(/|$)|^/api/tasks/\{task_id\}/audit$")


def test_people_routes_take_any_input_without_a_5xx_or_an_undocumented_answer(tmp_path, monkeypatch):
    for name in ("FACTORY_AUTH_TOKEN", "OIDC_CLIENT_SECRET", "GITHUB_OAUTH_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with factory_site(tmp_path, local=True) as site:
        schema = schemathesis.openapi.from_url(f"{site.url}/openapi.json", timeout=30)
        failures: list[str] = []
        fuzzed = []
        for result in schema.get_all_operations():
            op = result.ok()
            if not OURS.search(op.path):
                continue
            fuzzed.append(op.label)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @hypothesis.seed(SEED)
                @hypothesis.settings(
                    max_examples=EXAMPLES, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                )  # fmt: skip
                @hypothesis.given(case=op.as_strategy(generation_mode=mode))
                def run(case: Any) -> None:
                    case.call_and_validate(base_url=site.url, headers=BEARER, timeout=30)

                try:
                    run()
                except hypothesis.errors.Unsatisfiable:
                    if mode != GenerationMode.NEGATIVE:
                        raise
                except (Exception, FailureGroup) as exc:
                    failures.append(f"{op.label} [{mode.value}]: {exc}")
    assert len(fuzzed) >= 12, fuzzed
    assert not failures, "\n\n".join(failures)
