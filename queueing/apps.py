from django.apps import AppConfig


class QueueingConfig(AppConfig):
    name = "queueing"
    verbose_name = "Queueing"

    def ready(self):
        from queueing import signals  # noqa: F401
