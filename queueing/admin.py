from __future__ import annotations

import datetime

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from queueing.models import BypassToken, BypassUse, Draw, DrawEntry, Location, Slot, Ticket
from queueing.services import bypass, draws, quota, reservations, slots
from queueing.services.errors import ReservationError

# The admin speaks the site's language: Indonesian first, English when staff switch the site to English.
admin.site.site_header = _("War Tiket — Admin")
admin.site.site_title = _("Admin War Tiket")
admin.site.index_title = _("Administrasi situs")


def _short_time(moment) -> str:
    return timezone.localtime(moment).strftime("%d-%m %H:%M:%S")


def _remaining(slot) -> str | int:
    if not slot.pk:
        return "—"
    value = quota.remaining_for([slot]).get(slot.pk)
    return _("tidak ada di Redis — jalankan sync_quota") if value is None else value


class SlotForm(forms.ModelForm):
    class Meta:
        model = Slot
        fields = ["location", "date", "time_label", "quota", "war_opens_at", "war_closes_at"]
        fields += ["allocation", "draw_grace_seconds", "challenge"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A form posted without them (an older client, a script) keeps the model's defaults (first come,
        # first served, no challenge) rather than failing; the admin's own form always sends them.
        for name in ("allocation", "draw_grace_seconds", "challenge"):
            self.fields[name].required = False

    def clean_draw_grace_seconds(self):
        value = self.cleaned_data.get("draw_grace_seconds")
        return self.instance.draw_grace_seconds if value is None else value

    def clean_quota(self):
        new_quota = self.cleaned_data["quota"]
        try:
            quota.check_quota_change(self.instance, new_quota)
        except quota.QuotaError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return new_quota

    def clean(self):
        cleaned = super().clean()
        refusal = draws.change_refusal(
            self.instance.pk,
            cleaned.get("allocation") or self.instance.allocation,
            cleaned.get("war_opens_at"),
            cleaned.get("draw_grace_seconds"),
        )
        if refusal:
            raise forms.ValidationError(refusal)
        return cleaned


class SlotInline(admin.TabularInline):
    model = Slot
    form = SlotForm
    extra = 0
    fields = ["date", "time_label", "quota", "war_opens_at", "war_closes_at", "allocation", "draw_grace_seconds"]
    fields += ["challenge", "remaining"]
    readonly_fields = ["remaining"]

    @admin.display(description=_("sisa (Redis)"))
    def remaining(self, slot):
        return _remaining(slot)


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "active", "is_rehearsal"]
    list_filter = ["active", "is_rehearsal"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [SlotInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not Slot:
            return super().save_formset(request, form, formset, change)
        # Slot edits go through the service, which keeps Redis from gating on a superseded time.
        for slot in formset.save(commit=False):
            slots.save(slot)
        for slot in formset.deleted_objects:
            slot.delete()


@admin.register(Slot)
class SlotAdmin(admin.ModelAdmin):
    form = SlotForm
    # The draw is made by the system at draw_at (services/draws.py), never by hand: shown, not editable.
    readonly_fields = ["draw_commitment", "draw_seed", "draw_figures", "draw_record"]
    list_display = ["location", "date", "time_label", "quota", "allocation", "remaining", "opens", "war_closes"]
    list_display += ["challenge"]
    list_filter = ["location", "date", "allocation", "challenge"]
    date_hierarchy = "date"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("location")

    def save_model(self, request, obj, form, change):
        # Fences the slot in Redis before the commit and applies the edit after it (services/slots.py).
        slots.save(obj)

    @admin.display(description=_("sisa (Redis)"))
    def remaining(self, slot):
        return _remaining(slot)

    @staticmethod
    def _draw(slot) -> Draw | None:
        return Draw.objects.filter(slot=slot).first() if slot.pk and slot.is_draw else None

    @admin.display(description=_("undian: komitmen (sha256 benih)"))
    def draw_commitment(self, slot):
        draw = self._draw(slot)
        return draw.commitment if draw else "—"

    @admin.display(description=_("undian: benih"))
    def draw_seed(self, slot):
        draw = self._draw(slot)
        if draw is None:
            return "—"
        # Secret until the draw: whoever reads it early could grind positions (docs/fairness.md).
        return draw.seed if draw.is_drawn else gettext("rahasia sampai undian ditarik")

    @admin.display(description=_("undian: hasil"))
    def draw_figures(self, slot):
        draw = self._draw(slot)
        if draw is None or not draw.is_drawn:
            return "—"
        return gettext(
            "%(entrants)s peserta, %(winners)s menang, %(waiting)s daftar tunggu, %(skipped)s dilewati; "
            "diundi %(duration)s ms, semua tiket tersimpan %(lag)s ms setelah jadwal undian"
        ) % {
            "entrants": draw.entrants,
            "winners": draw.winners,
            "waiting": draw.waiting,
            "skipped": draw.skipped,
            "duration": draw.duration_ms,
            "lag": draw.lag_ms,
        }

    @admin.display(description=_("undian: catatan publik"))
    def draw_record(self, slot):
        if not (slot.pk and slot.is_draw):
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("queueing:draw", args=[slot.pk]), gettext("halaman undian"))

    # Times as "dd-mm HH:MM:SS" (the war's second matters; the admin's long date format pushed columns off).
    @admin.display(description=_("war dibuka"), ordering="war_opens_at")
    def opens(self, slot):
        return _short_time(slot.war_opens_at)

    @admin.display(description=_("war ditutup"), ordering="war_closes_at")
    def war_closes(self, slot):
        # The explicit close, else the slot's start (``Slot.closes_at``): what the war actually does.
        return _short_time(slot.closes_at)


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    # Short columns so a row fits one line at 1366 px with the admin's sidebar and filters open.
    list_display = ["code", "number", "slot_short", "buyer", "status", "reserved"]
    list_filter = ["status", "slot__location", "slot__date", "slot"]
    search_fields = ["code", "user__email", "user__nik"]
    list_select_related = ["slot", "slot__location", "user"]
    readonly_fields = ["slot", "user", "queue_number", "code", "status", "reserved_at", "created_at", "cancelled_at"]
    actions = ["check_in", "cancel"]

    @admin.display(description=_("no."), ordering="queue_number")
    def number(self, ticket):
        return ticket.queue_number

    @admin.display(description=_("slot"), ordering="slot__date")
    def slot_short(self, ticket):
        slot = ticket.slot
        return format_html(
            '{} <span class="nowrap">· {} {}</span>', slot.location.name, f"{slot.date:%d-%m}", slot.time_label
        )

    @admin.display(description=_("pembeli"), ordering="user__email")
    def buyer(self, ticket):
        # The full address is in the title: long ones are cut with an ellipsis by css/admin.css.
        return format_html('<span title="{}">{}</span>', ticket.user.email, ticket.user.email)

    @admin.display(description=_("diambil pada"), ordering="reserved_at")
    def reserved(self, ticket):
        return _short_time(ticket.reserved_at)

    def has_add_permission(self, request):
        # Tickets come only from the war (or reconcile): a hand-made row would bypass the quota.
        return False

    # Status changes go through the services (never a raw edit): a cancellation must free the Redis seat.
    @admin.action(description=_("Tandai tiket terpilih sudah hadir"))
    def check_in(self, request, queryset):
        done = sum(reservations.check_in(code) for code in queryset.values_list("code", flat=True))
        self.message_user(
            request, ngettext("%(n)d tiket ditandai hadir.", "%(n)d tiket ditandai hadir.", done) % {"n": done}
        )

    @admin.action(description=_("Batalkan tiket terpilih (nomornya kembali tersedia)"))
    def cancel(self, request, queryset):
        done = 0
        for code in queryset.filter(status=Ticket.Status.ACTIVE).values_list("code", flat=True):
            try:
                reservations.cancel(None, code, reason="staff")
                done += 1
            except ReservationError as exc:
                self.message_user(request, f"{code}: {exc.message}", level=messages.ERROR)
        self.message_user(request, ngettext("%(n)d tiket dibatalkan.", "%(n)d tiket dibatalkan.", done) % {"n": done})


class BypassTokenForm(forms.ModelForm):
    class Meta:
        model = BypassToken
        fields = ["name", "slot", "expires_at", "revoked"]


@admin.register(BypassToken)
class BypassTokenAdmin(admin.ModelAdmin):
    form = BypassTokenForm
    list_display = ["name", "prefix", "slot", "expires_at", "revoked", "uses_count"]
    readonly_fields = ["prefix", "created_by", "created_at"]

    def get_changeform_initial_data(self, request):
        return {"expires_at": timezone.now() + datetime.timedelta(days=1)}

    @admin.display(description=_("dipakai"))
    def uses_count(self, token):
        return token.uses.count()

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        with transaction.atomic():
            token, raw = bypass.issue(obj.name, expires_at=obj.expires_at, slot=obj.slot, created_by=request.user)
        obj.pk = token.pk
        messages.warning(
            request,
            format_html(
                gettext(
                    "Token bypass (hanya ditampilkan sekali, salin sekarang): <code>{}</code> — kirim sebagai "
                    "header <code>X-War-Bypass</code>."
                ),
                raw,
            ),
        )


@admin.register(BypassUse)
class BypassUseAdmin(admin.ModelAdmin):
    list_display = ["used_at", "token", "user", "slot", "outcome"]
    list_filter = ["token", "outcome"]
    list_select_related = ["token", "user", "slot", "slot__location"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DrawEntry)
class DrawEntryAdmin(admin.ModelAdmin):
    """Entries are made by buyers and decided by the draw (services/draws.py): staff look, never edit."""

    list_display = ["pseudonym", "slot", "outcome", "position", "waitlist_position", "user", "client_ip", "entered_at"]
    list_filter = ["outcome", "slot__date"]
    search_fields = ["pseudonym", "client_ip", "user__email"]
    list_select_related = ["slot", "slot__location", "user"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
