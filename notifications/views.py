"""Telegram over HTTP: the profile's Connect/Disconnect buttons and the bot's webhook."""

from __future__ import annotations

import hmac
import json
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notifications.services import linking, telegram
from wartiket.http import safe_next
from wartiket.qr import qr_svg

log = logging.getLogger(__name__)

WEBHOOK_ERRORS = {
    "bad_secret": (403, "Missing or wrong X-Telegram-Bot-Api-Secret-Token."),
    "telegram_disabled": (503, "TELEGRAM_BOT_TOKEN is not set on this server."),
    "bad_update": (400, "The body is not a Telegram Update."),
}


@never_cache
@login_required
@require_POST
def connect(request):
    """Issue a one-time link token and show its deep link (the token is shown once, never stored raw)."""
    if not telegram.enabled():
        messages.warning(request, _("Notifikasi Telegram belum diaktifkan di server ini."))
        return redirect(safe_next(request, "/"))
    raw, token = linking.issue_token(request.user)
    context = {
        "deep_link": linking.deep_link(raw),
        "qr_svg": qr_svg(linking.deep_link(raw), _("Kode QR tautan Telegram")),
        "bot_username": settings.TELEGRAM_BOT_USERNAME,
        "expires_at": token.expires_at,
        "minutes": settings.TELEGRAM_LINK_TOKEN_MINUTES,
        "back": safe_next(request, "/"),
    }
    return render(request, "notifications/connect.html", context)


@login_required
@require_POST
def disconnect(request):
    if linking.unlink_user(request.user):
        messages.success(request, _("Telegram sudah diputus dari akunmu."))
    return redirect(safe_next(request, "/"))


def _webhook_error(code: str) -> JsonResponse:
    status, detail = WEBHOOK_ERRORS[code]
    return JsonResponse({"code": code, "detail": detail}, status=status)


@csrf_exempt
@require_POST
async def webhook(request):
    """Telegram posts updates here (``manage.py telegram_webhook set <url>``); only with our secret."""
    secret = settings.TELEGRAM_WEBHOOK_SECRET
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    # Constant-time: the secret is the only thing standing between the internet and our bot.
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return _webhook_error("bad_secret")
    if not telegram.enabled():
        return _webhook_error("telegram_disabled")
    # aiogram (and the bot's handlers) only when an update arrives: importing it takes ~2 s, which every
    # web process would otherwise pay at boot through the URLconf, for a view most deployments never use.
    from aiogram.types import Update
    from pydantic import ValidationError

    from notifications import bot

    try:
        data = json.loads(request.body)
        Update.model_validate(data)
    except (ValueError, ValidationError):
        return _webhook_error("bad_update")
    # An exception here is a 500: Telegram sends the update again, and it is handled then.
    await bot.feed_webhook(data)
    return JsonResponse({"ok": True})
