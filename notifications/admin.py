from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from notifications.models import LinkToken, Notification, ReminderSubscription, TelegramLink
from notifications.services import queue


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "kind", "object_ref", "status", "attempts", "short_error", "sent_at"]
    list_filter = ["status", "kind"]
    search_fields = ["user__email", "object_ref", "last_error"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    actions = ["send_again"]
    readonly_fields = [
        "user",
        "kind",
        "object_ref",
        "status",
        "attempts",
        "throttled",
        "last_error",
        "next_attempt_at",
        "claim",
        "lease_until",
        "http_started_at",
        "chat_id",
        "telegram_message_id",
        "created_at",
        "updated_at",
        "sent_at",
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("galat terakhir"))
    def short_error(self, notification: Notification) -> str:
        error = notification.last_error
        return error if len(error) <= 80 else error[:77] + "…"

    @admin.action(description=_("Kirim lagi (hanya yang gagal atau dilewati)"))
    def send_again(self, request, queryset):
        # Only final, unsent rows: resending a 'sent' one would be a deliberate duplicate.
        rows = list(queryset.filter(status__in=[Notification.Status.FAILED, Notification.Status.SKIPPED]))
        with transaction.atomic():
            for row in rows:
                reopened = Notification.objects.filter(pk=row.pk, status=row.status).update(
                    status=Notification.Status.PENDING,
                    next_attempt_at=None,
                    # A fresh retry budget; last_error keeps what went wrong before.
                    attempts=0,
                    throttled=0,
                )
                if reopened:
                    queue.deliver_after_commit(row.pk)
        count = len(rows)
        messages.success(
            request,
            ngettext("%(n)d notifikasi diantrekan lagi.", "%(n)d notifikasi diantrekan lagi.", count) % {"n": count},
        )


@admin.register(TelegramLink)
class TelegramLinkAdmin(admin.ModelAdmin):
    list_display = ["user", "chat_id", "username", "language_code", "active", "linked_at", "deactivated_reason"]
    list_filter = ["active", "language_code"]
    search_fields = ["user__email", "username", "=chat_id"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]


@admin.register(ReminderSubscription)
class ReminderSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["user", "slot", "created_at"]
    search_fields = ["user__email"]
    list_select_related = ["user", "slot__location"]
    raw_id_fields = ["user", "slot"]


@admin.register(LinkToken)
class LinkTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "created_at", "expires_at", "used_at", "used_by_chat"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    readonly_fields = ["user", "token_hash", "created_at", "expires_at", "used_at", "used_by_chat"]

    def has_add_permission(self, request):
        return False
