"""What a sign-up must pass before an account is written: the per-address daily limit and a proof of work.

The register view asks ``gate`` first; a refusal is shown on the form with its status (429 + Retry-After for
the limit, 403 for a missing or bad proof) and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from accounts.services import challenge, throttle
from queueing.services.errors import ReservationError
from wartiket.http import client_ip

# What the page says when its proof of work is missing or refused (the widget solves it in the background).
PROOF_MESSAGES = {
    "challenge_required": _(
        'Pemeriksaan anti-bot belum selesai. Tunggu tanda centang "Terverifikasi" lalu kirim lagi.'
    ),
    "challenge_invalid": _("Pemeriksaan anti-bot gagal atau kedaluwarsa. Tunggu tanda centang lalu kirim lagi."),
}


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    retry_after: int | None = None


def gate(request, form) -> Refusal | None:
    """None when this sign-up may go ahead (its slot in the day's count is then taken), else why not.

    The day's count is checked before the form is validated (a spent address costs no database query) and
    taken once the form is valid, atomically, so a burst of concurrent sign-ups cannot all slip under it.
    """
    ip = client_ip(request)
    if wait := throttle.registration_wait(ip):
        return Refusal(429, throttle.registration_message(wait), wait)
    try:
        challenge.verify_request(request)
    except ReservationError as exc:
        return Refusal(exc.status, str(PROOF_MESSAGES[exc.code]))
    if not form.is_valid():
        return None  # the form explains itself; nothing counted
    if wait := throttle.take_registration(ip):
        return Refusal(429, throttle.registration_message(wait), wait)
    request.signup_counted = True
    form.instance.registered_ip = ip or None
    return None


def not_made(request) -> None:
    """The form was valid but the account was not written (a concurrent sign-up took the NIK): give back."""
    if getattr(request, "signup_counted", False):
        throttle.give_back_registration(client_ip(request))
        request.signup_counted = False


def refused(request, template: str, context: dict, refusal: Refusal):
    context["form"].add_error(None, refusal.message)
    response = render(request, template, context, status=refusal.status)
    if refusal.retry_after:
        response["Retry-After"] = str(refusal.retry_after)
    return response
