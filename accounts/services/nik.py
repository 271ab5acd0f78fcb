"""Changing an account's NIK while the one-ticket-per-person rule depends on it.

A ticket keeps the person it was issued to (``Ticket.person``, frozen at reservation), and PostgreSQL
allows one holding ticket per person and per account on a war day. So a NIK change can never hand out a
second ticket: the freed NIK still holds its ticket that day, and the account is still held to one. What
is left is honesty towards the buyer and an audit trail for staff:
- a buyer cannot change their NIK while they hold a ticket for today or later (the profile says why);
- staff can, with a reason, which is recorded (``NikChange``); the rule above still applies.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import NikChange, User


def held_tickets(user: User):
    """The account's tickets that still hold a seat today or later (what a NIK change would affect)."""
    from queueing.models import Ticket  # accounts must not import queueing at module level (app order)

    return Ticket.objects.filter(user_id=user.pk, status__in=Ticket.HOLDING, war_day__gte=timezone.localdate())


def buyer_may_change(user: User, new_nik: str | None) -> None:
    """Raise ValidationError if a buyer may not change their NIK to ``new_nik`` now."""
    if user.pk is None or (user.nik or None) == (new_nik or None):
        return
    ticket = held_tickets(user).select_related("slot", "slot__location").order_by("war_day").first()
    if ticket is not None:
        raise ValidationError(
            _(
                "NIK tidak bisa diubah selama Anda memegang nomor antrean aktif (%(ticket)s, %(slot)s). "
                "Batalkan tiket itu dulu, atau hubungi staf bila NIK Anda salah ketik."
            )
            % {"ticket": f"#{ticket.queue_number}", "slot": ticket.slot},
            code="nik_locked",
        )


@transaction.atomic
def staff_change(user: User, new_nik: str | None, *, by: User | None, reason: str) -> NikChange | None:
    """Staff change a NIK; with tickets held a reason is required, and the change is recorded."""
    old = User.objects.select_for_update().values_list("nik", flat=True).get(pk=user.pk)
    if (old or None) == (new_nik or None):
        return None
    if held_tickets(user).exists() and not reason.strip():
        raise ValidationError(
            _("Akun ini memegang nomor antrean aktif: tulis alasan perubahan NIK."), code="nik_reason_required"
        )
    user.nik = new_nik or None
    user.save()
    return NikChange.objects.create(user=user, old_nik=old or "", new_nik=new_nik or "", reason=reason, changed_by=by)
