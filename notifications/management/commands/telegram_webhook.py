import asyncio

from aiogram.exceptions import TelegramAPIError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from notifications.services import telegram


class Command(BaseCommand):
    help = (
        "Point Telegram at our webhook (`set https://example.com/telegram/webhook/`), remove it (`delete`), "
        "or show it (`info`). Setting sends TELEGRAM_WEBHOOK_SECRET, which the view then requires on every "
        "update. While a webhook is set, `runbot` (polling) can't run."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        set_parser = sub.add_parser("set", help="Set the webhook URL")
        set_parser.add_argument("url", help="Public HTTPS URL of /telegram/webhook/")
        set_parser.add_argument("--drop-pending", action="store_true", help="Discard updates waiting at Telegram")
        delete_parser = sub.add_parser("delete", help="Remove the webhook (back to polling)")
        delete_parser.add_argument("--drop-pending", action="store_true", help="Discard updates waiting at Telegram")
        sub.add_parser("info", help="Show the current webhook")

    def handle(self, *args, action, **options):
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("TELEGRAM_BOT_TOKEN is not set.")
        if action == "set":
            if not settings.TELEGRAM_WEBHOOK_SECRET:
                raise CommandError("TELEGRAM_WEBHOOK_SECRET is not set: the webhook would refuse every update.")
            if not options["url"].startswith("https://") and not settings.TELEGRAM_API_URL:
                raise CommandError("Telegram only calls https:// webhook URLs.")
        try:
            message = asyncio.run(self._run(action, options))
        except TelegramAPIError as exc:
            raise CommandError(f"Telegram refused: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(message))

    async def _run(self, action: str, options: dict) -> str:
        bot = telegram.make_bot()
        try:
            if action == "set":
                await bot.set_webhook(
                    options["url"],
                    secret_token=settings.TELEGRAM_WEBHOOK_SECRET,
                    allowed_updates=["message", "callback_query"],
                    drop_pending_updates=options["drop_pending"],
                )
                return f"Webhook set to {options['url']}"
            if action == "delete":
                await bot.delete_webhook(drop_pending_updates=options["drop_pending"])
                return "Webhook deleted; `runbot` can poll now."
            info = await bot.get_webhook_info()
            if not info.url:
                return "No webhook set (polling mode)."
            error = f", last error: {info.last_error_message}" if info.last_error_message else ""
            return f"Webhook: {info.url} ({info.pending_update_count} pending{error})"
        finally:
            await bot.session.close()
