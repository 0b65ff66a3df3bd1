"""The task lifecycle's home: the service that creates, starts, answers, cancels, retries and hands off.

- `service.py`: `TaskService`, the state rules and the one writer of task status outside the
  activities' progress updates (`rows.py` holds its writes).
- `ports.py`: the narrow workflow-engine port it sits on (Temporal's adapter: `temporal/launcher.py`)
  and the repo checker it receives (`git ls-remote` lives there, not in the engine adapter).
"""
