from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Notifikasi Telegram")

    def ready(self) -> None:
        from notifications import receivers
        from queueing.services import events

        # dispatch_uid: ready() can run more than once (tests, autoreload); connect once.
        events.reserved.connect(receivers.ticket_reserved, dispatch_uid="notifications.ticket_reserved")
        events.cancelled.connect(receivers.ticket_cancelled, dispatch_uid="notifications.ticket_cancelled")
        events.drawn.connect(receivers.draw_made, dispatch_uid="notifications.draw_made")
