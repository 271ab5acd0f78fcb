from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class QueueingConfig(AppConfig):
    name = "queueing"
    verbose_name = _("Antrean war")

    def ready(self):
        from queueing import signals  # noqa: F401
