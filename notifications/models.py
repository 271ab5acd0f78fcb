"""Telegram links and the notification ledger that makes each message go out once.

A ``Notification`` row stands for one event worth one message (user, kind, object). Its unique constraint
means an event can never be recorded twice; its status moves only by state-conditional UPDATEs
(``services/delivery.py``), so two tasks delivering the same row can never both send it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class TelegramLink(models.Model):
    """One account's Telegram chat. A chat belongs to at most one account, an account to at most one chat."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="telegram_link", verbose_name=_("pengguna")
    )
    chat_id = models.BigIntegerField(_("ID chat"), unique=True)
    username = models.CharField(_("nama pengguna Telegram"), max_length=64, blank=True)
    # Telegram's IETF tag from the user's app ("en", "en-GB", "id"); decides the language of messages.
    language_code = models.CharField(_("kode bahasa"), max_length=16, blank=True)
    active = models.BooleanField(
        _("aktif"), default=True, help_text=_("Mati begitu Telegram melaporkan pengguna memblokir bot")
    )
    linked_at = models.DateTimeField(_("terhubung sejak"), default=timezone.now)
    deactivated_at = models.DateTimeField(_("dinonaktifkan pada"), null=True, blank=True)
    deactivated_reason = models.CharField(_("alasan dinonaktifkan"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("tautan Telegram")
        verbose_name_plural = _("tautan Telegram")

    def __str__(self) -> str:
        return f"{self.user} ↔ chat {self.chat_id}"

    @property
    def language(self) -> str:
        return language_for(self.language_code)


def language_for(language_code: str | None) -> str:
    """Indonesian unless the user's Telegram speaks English."""
    return "en" if (language_code or "").lower().startswith("en") else "id"


class LinkToken(models.Model):
    """A one-time, expiring token behind ``t.me/<bot>?start=<token>``. Only its SHA-256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="telegram_link_tokens",
        verbose_name=_("pengguna"),
    )
    token_hash = models.CharField(_("hash token"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)
    expires_at = models.DateTimeField(_("kedaluwarsa"))
    used_at = models.DateTimeField(_("dipakai pada"), null=True, blank=True)
    used_by_chat = models.BigIntegerField(_("dipakai oleh chat"), null=True, blank=True)

    class Meta:
        verbose_name = _("token penautan Telegram")
        verbose_name_plural = _("token penautan Telegram")

    def __str__(self) -> str:
        return f"link token {self.pk} for {self.user}"


class ReminderSubscription(models.Model):
    """A user asked to be told N minutes before a slot's war opens."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="war_reminders", verbose_name=_("pengguna")
    )
    slot = models.ForeignKey(
        "queueing.Slot", on_delete=models.CASCADE, related_name="reminders", verbose_name=_("slot")
    )
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "slot"], name="reminder_once_per_user_slot")]
        verbose_name = _("pengingat war")
        verbose_name_plural = _("pengingat war")

    def __str__(self) -> str:
        return f"reminder {self.user} → slot {self.slot_id}"


class Notification(models.Model):
    class Kind(models.TextChoices):
        TICKET_RESERVED = "ticket_reserved", _("tiket didapat")
        TICKET_CANCELLED = "ticket_cancelled", _("tiket dibatalkan")
        REMINDER = "reminder", _("pengingat war")
        LINKED = "linked", _("akun terhubung")
        # Draw mode: an entrant the draw put on the waiting list (object: the slot id). Winners hear
        # TICKET_RESERVED like any buyer.
        DRAW_WAITING = "draw_waiting", _("daftar tunggu undian")

    class Status(models.TextChoices):
        PENDING = "pending", _("menunggu")
        SENDING = "sending", _("sedang dikirim")
        RETRY = "retry", _("akan dicoba lagi")
        SENT = "sent", _("terkirim")
        FAILED = "failed", _("gagal")
        SKIPPED = "skipped", _("dilewati")

    # States a delivery may claim (the rest are final, or someone holds the row).
    CLAIMABLE = [Status.PENDING, Status.RETRY]
    FINAL = [Status.SENT, Status.FAILED, Status.SKIPPED]

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", verbose_name=_("pengguna")
    )
    kind = models.CharField(_("jenis"), max_length=20, choices=Kind.choices)
    # What the event is about: a ticket code, a slot id, a link token id.
    object_ref = models.CharField(_("tentang"), max_length=64)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(
        _("percobaan"), default=0, help_text=_("Percobaan kirim, termasuk jawaban 429")
    )
    # Attempts Telegram answered with 429: they don't count towards giving up.
    throttled = models.PositiveSmallIntegerField(_("dibatasi (429)"), default=0)
    last_error = models.TextField(_("galat terakhir"), blank=True)
    next_attempt_at = models.DateTimeField(_("percobaan berikutnya"), null=True, blank=True)
    # Who holds a 'sending' row and until when; a lapsed lease means that worker died.
    claim = models.UUIDField(_("klaim"), null=True, blank=True, editable=False)
    lease_until = models.DateTimeField(_("klaim berlaku sampai"), null=True, blank=True)
    # Set just before the HTTP call: a dead worker's row with it set may or may not have reached Telegram.
    http_started_at = models.DateTimeField(_("panggilan HTTP dimulai"), null=True, blank=True)
    chat_id = models.BigIntegerField(_("ID chat"), null=True, blank=True)
    telegram_message_id = models.BigIntegerField(_("ID pesan Telegram"), null=True, blank=True)
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)
    updated_at = models.DateTimeField(_("diperbarui"), auto_now=True)
    sent_at = models.DateTimeField(_("terkirim pada"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "object_ref"], name="notification_once_per_event"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        verbose_name = _("notifikasi")
        verbose_name_plural = _("notifikasi")

    def __str__(self) -> str:
        return f"{self.kind} {self.object_ref} → {self.user} ({self.status})"
