"""What happened to tickets, announced to whoever listens (notifications, live quota).

Plain Django signals keep the reservation path free of knowledge about Telegram or WebSockets.
Receivers must be cheap: queue work with ``transaction.on_commit``, never do it inline.
"""

from __future__ import annotations

from django.dispatch import Signal

reserved = Signal()  # sender=None, code=str
cancelled = Signal()  # sender=None, code=str
drawn = Signal()  # sender=None, slot_id=int: a draw slot's draw is committed and in Redis


def ticket_reserved(code: str) -> None:
    reserved.send(sender=None, code=code)


def ticket_cancelled(code: str) -> None:
    cancelled.send(sender=None, code=code)


def draw_made(slot_id: int) -> None:
    drawn.send(sender=None, slot_id=slot_id)
