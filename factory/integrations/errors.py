"""A failed call to a hosted service, and how a notification activity reports it to Temporal."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

# a client error that a later try may still get past: a timeout, a conflict, rate limiting
_RETRYABLE_4XX = frozenset({408, 409, 429})


class ServiceError(Exception):
    """A call to Plane, Telegram or GitHub failed; `status` is the HTTP status (None: no answer at all)."""

    service = "Service"

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """Whether trying again cannot help (the request itself is wrong: a 4xx other than the retryable ones)."""
        return self.status is not None and 400 <= self.status < 500 and self.status not in _RETRYABLE_4XX

    def as_application_error(self) -> ApplicationError:
        """For Temporal: rate limits retried after the delay the service asks for, permanent errors not at all."""
        if self.status == 429:
            return ApplicationError(
                str(self), type=f"{self.service}RateLimited", next_retry_delay=timedelta(seconds=self.retry_after or 5)
            )
        return ApplicationError(str(self), type=f"{self.service}Error", non_retryable=self.permanent)
