import asyncio
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from notifications import bot


class Command(BaseCommand):
    help = (
        "Run the Telegram bot with long polling (answers /start, /status, /tickets, /remind, /stop, /help). "
        "Use it where Telegram can't reach us with a webhook (a laptop, `make run`); in production either run "
        "this or set a webhook with `telegram_webhook set`, not both. Needs TELEGRAM_BOT_TOKEN (and "
        "TELEGRAM_API_URL for a self-hosted or fake Bot API server). An unreachable Bot API is waited out (one "
        "log line, attempts at growing intervals of up to 5 s), not a reason to exit; a rejected token or a "
        "webhook that is set are (exit 1). Ctrl-C or SIGTERM stops it cleanly."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--polling-timeout", type=int, default=10, help="Seconds each getUpdates long poll may wait (default 10)"
        )

    def handle(self, *args, polling_timeout=10, **options):
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("TELEGRAM_BOT_TOKEN is not set: there is no bot to run.")
        # aiogram logs each update at INFO; keep the console to what an operator needs.
        logging.getLogger("aiogram.event").setLevel(logging.WARNING)
        api = settings.TELEGRAM_API_URL or "https://api.telegram.org"
        self.stdout.write(f"Polling {api} for @{settings.TELEGRAM_BOT_USERNAME} (Ctrl-C stops)")
        try:
            handled = asyncio.run(bot.run_polling(polling_timeout=polling_timeout))
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Bot stopped after handling {handled} update(s)."))
