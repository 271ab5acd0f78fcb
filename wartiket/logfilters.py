"""Logging filters (settings ``LOGGING``)."""

from __future__ import annotations

import logging


class QuietClientErrors(logging.Filter):
    """Drops ``django.request``'s line for a 4xx answer on the given paths; 5xx and other paths stay logged.

    A war's refusals (sold out, too early, rate limited…) are its normal answers, thousands a second,
    counted by the war room: a warning line for each would cost more than the refusal itself.
    """

    def __init__(self, paths: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.paths = frozenset(paths)

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is None or not 400 <= status < 500:
            return True
        return getattr(getattr(record, "request", None), "path", None) not in self.paths
