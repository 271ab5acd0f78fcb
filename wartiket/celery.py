import os
import warnings

from celery import Celery
from celery.apps.worker import Worker as CeleryWorker
from celery.exceptions import CPendingDeprecationWarning
from kombu.utils.objects import cached_property

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")


class Worker(CeleryWorker):
    """``celery worker`` as if run with --without-gossip --without-mingle --without-heartbeat, always.

    Gossip died with the broker: after a Redis restart the consumer restarts its steps, and Gossip's stop
    closes its channel on a connection that is already gone ("Error on restarting Gossip: AttributeError
    'NoneType' object has no attribute 'connection_errors'", and with other timing the worker's fatal
    "Unrecoverable error: AttributeError 'NoneType' object has no attribute 'hostname'": celery/kombu#582).
    None of the three is used here: gossip and heartbeats are worker-to-worker events for monitors and
    elections, mingle asks other workers for revoked ids at start (a second per connect). Set in code so
    every command line (make run, docs/deploy.md, docker-compose, tests) gets it.
    """

    def prepare_args(self, **kwargs):
        kwargs = super().prepare_args(**kwargs)
        kwargs.update(without_gossip=True, without_mingle=True, without_heartbeat=True)
        return kwargs

    def setup_logging(self, colorize=None):
        handled = super().setup_logging(colorize)
        # After Celery's own set-up, which turns all of its deprecation warnings on again: the warning on every
        # connection loss that worker_cancel_long_running_tasks_on_connection_loss changes in 6.0 (decided below).
        warnings.filterwarnings(
            "ignore",
            message=r"\s*In Celery 5\.1 we introduced an optional breaking",
            category=CPendingDeprecationWarning,
        )
        return handled


class WarTiketCelery(Celery):
    @cached_property
    def Worker(self):  # Celery's name for it
        return self.subclass_with_self(Worker)


app = WarTiketCelery("wartiket")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # Keep trying to reach the broker, at start (a worker started before Redis) and after a loss (Redis
    # restarted), for as long as it takes: the default gives up after 100 attempts and exits.
    broker_connection_retry_on_startup=True,
    broker_connection_retry=True,
    broker_connection_max_retries=None,
    # Tasks running when the connection drops keep running; their late ack is lost and the broker hands
    # them out again, which the Notification row's claim makes harmless. Cancelling them instead (Celery 6's
    # default) could cut a Telegram send off mid-request and leave it "uncertain".
    worker_cancel_long_running_tasks_on_connection_loss=False,
)
app.autodiscover_tasks()
