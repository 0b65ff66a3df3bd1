"""Outage bookkeeping for memory: one warning per kind of failure until it recovers."""

from __future__ import annotations

import logging


class Unavailable(Exception):
    """The database cannot be reached now; the caller degrades."""


class OutageLog:
    """Logs the first failure of each kind as a warning, repeats at debug, and the recovery once.

    Memory is an aid, never a dependency: an outage must not flood the log with a warning per call.
    """

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._warned: set[str] = set()

    def failed(self, kind: str, message: str) -> None:
        """Report a failure of `kind`: a warning the first time, debug until it recovers."""
        if kind in self._warned:
            self.logger.debug(message)
            return
        self._warned.add(kind)
        self.logger.warning(message)

    def recovered(self, kind: str, message: str) -> None:
        """Report that `kind` works again (logged only when its failure was)."""
        if kind in self._warned:
            self._warned.discard(kind)
            self.logger.info(message)
