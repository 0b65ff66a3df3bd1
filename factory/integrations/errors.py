"""A failed call to a hosted service, and how an activity reports a failed call to Temporal.

Whether it is retried follows the one rule of `factory/domain/errors.py`, for every service and
for Factory's git alike.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from factory.domain.errors import http_retryable, not_retried


class ServiceError(Exception):
    """A call to Plane, Telegram or GitHub failed; `status` is the HTTP status (None: no answer at all)."""

    service = "Service"

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """Whether trying again cannot help (the request itself is wrong, or the credentials are)."""
        return not http_retryable(self.status)

    def as_application_error(self) -> ApplicationError:
        """For Temporal: rate limits retried after the delay the service asks for, permanent errors not at all."""
        retry_after = (self.retry_after or 5) if self.status == 429 else self.retry_after
        suffix = "RateLimited" if self.status == 429 else "Error"
        return failure(str(self), f"{self.service}{suffix}", not self.permanent, retry_after)


def failure(message: str, type: str, retryable: bool, retry_after: float | None = None) -> ApplicationError:
    """The error an activity raises for a failed call.

    A non-retryable one says so in its message; a retryable one carries the attempt it failed on
    (the workflow's error text says "gave up after N tries" when the retries run out) and waits the
    service's Retry-After before the next try.
    """
    if not retryable:
        return ApplicationError(not_retried(message), type=type, non_retryable=True)
    delay = timedelta(seconds=retry_after) if retry_after is not None else None
    attempt = activity.info().attempt if activity.in_activity() else None
    return ApplicationError(message, {"attempt": attempt}, type=type, next_retry_delay=delay)
