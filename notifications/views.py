"""Telegram over HTTP: the profile's Connect/Disconnect buttons and the bot's webhook."""

from __future__ import annotations

import hmac
import json
import logging
import re

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils.html import escape
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notifications.services import linking, telegram

log = logging.getLogger(__name__)

WEBHOOK_ERRORS = {
    "bad_secret": (403, "Missing or wrong X-Telegram-Bot-Api-Secret-Token."),
    "telegram_disabled": (503, "TELEGRAM_BOT_TOKEN is not set on this server."),
    "bad_update": (400, "The body is not a Telegram Update."),
}


_SVG_SIZE = re.compile(r'\s(width|height)="[^"]*"')


def _qr_svg(link: str) -> SafeString:
    """The deep link as an inline SVG QR code, for linking from a desktop browser with a phone."""
    image = qrcode.make(link, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    svg = _SVG_SIZE.sub("", image.to_string(encoding="unicode"), count=2)
    label = escape(_("Kode QR tautan Telegram"))
    # Safe: qrcode's own markup plus an escaped label.
    return mark_safe(svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1))  # noqa: S308


def _back(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


@never_cache
@login_required
@require_POST
def connect(request):
    """Issue a one-time link token and show its deep link (the token is shown once, never stored raw)."""
    if not telegram.enabled():
        messages.warning(request, _("Notifikasi Telegram belum diaktifkan di server ini."))
        return redirect(_back(request))
    raw, token = linking.issue_token(request.user)
    context = {
        "deep_link": linking.deep_link(raw),
        "qr_svg": _qr_svg(linking.deep_link(raw)),
        "bot_username": settings.TELEGRAM_BOT_USERNAME,
        "expires_at": token.expires_at,
        "minutes": settings.TELEGRAM_LINK_TOKEN_MINUTES,
        "back": _back(request),
    }
    return render(request, "notifications/connect.html", context)


@login_required
@require_POST
def disconnect(request):
    if linking.unlink_user(request.user):
        messages.success(request, _("Telegram sudah diputus dari akunmu."))
    return redirect(_back(request))


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
