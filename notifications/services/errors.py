"""Refusals the bot explains to users: a stable ``code`` plus the message for it."""

from __future__ import annotations


class CodedError(Exception):
    messages: dict = {}

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code

    @property
    def message(self) -> str:
        return str(self.messages[self.code])
