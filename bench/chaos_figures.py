"""Write bench/CHAOS.md from the figures the fault-injection suite (tests/chaos/) left behind.

Usage::

    CHAOS_FIGURES=/tmp/chaos.jsonl python -m pytest -m chaos tests/chaos/
    python -m bench.chaos_figures /tmp/chaos.jsonl

Each line of the file is one test run (tests/chaos/stages.py `record_figures`); the table shows
them all, and the totals line sums crashes, tasks, lost tasks and duplicates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("CHAOS.md")

HEADER = """# Fault injection: figures from the suite's own run

Produced by `python -m bench.chaos_figures FILE` from the JSON lines `tests/chaos/` appends to
`$CHAOS_FIGURES` (one per test run), on the machine and commit the tests ran on. "Restart to end" is
the time from the restarted process being spawned to the task's final status (done, or cancelled for
the task cancelled during cleanup); the suite fails any task that takes over 60 s. "Notice after
recovery" is how long after Plane and Telegram came back their last late notification arrived.

How each crash is made: tests/chaos/test_crash_stages.py (SIGKILL of `factory worker`, and of
`factory up` whose Temporal dev server dies with it, with six tasks held in the six stages: preparing,
agent running, pushing, opening the PR, cleaning up, waiting for an answer), tests/chaos/test_outages.py
and tests/chaos/test_notify_outages.py (GitHub, Plane and Telegram failing on demand).

"""


def render(rows: list[dict]) -> str:
    lines = [
        "| when | run | crashes | tasks | stages | lost | duplicates | worst restart to end (s) | notice after recovery (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('at', '')} | {r['test']} | {r.get('crashes', 0)} | {r.get('tasks', 0)} | "
            f"{', '.join(r.get('stages', [])) or '-'} | {r.get('lost', 0)} | {r.get('duplicates', 0)} | "
            f"{r.get('worst_restart_to_end_s', '-')} | {r.get('worst_notice_after_recovery_s', '-')} |"
        )
    worst = [r["worst_restart_to_end_s"] for r in rows if "worst_restart_to_end_s" in r]
    lines.append(
        f"| **total** | {len(rows)} runs | {sum(r.get('crashes', 0) for r in rows)} | "
        f"{sum(r.get('tasks', 0) for r in rows)} | | {sum(r.get('lost', 0) for r in rows)} | "
        f"{sum(r.get('duplicates', 0) for r in rows)} | {max(worst) if worst else '-'} | |"
    )
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    rows = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line.strip()]
    OUT.write_text(render(rows))
    print(f"wrote {OUT} ({len(rows)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
