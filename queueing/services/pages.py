"""What the buyer pages show, assembled from PostgreSQL (slots, tickets) and Redis (live state).

Views stay thin: they call one function here and render. Each page reads live state for all its slots
in one Redis round trip (``live.read_states``), which also returns the server clock the page starts from.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from accounts.models import User
from queueing.models import DrawEntry, Location, Slot, Ticket
from queueing.services import catalog, clock, draws, live
from queueing.services.errors import ERRORS
from queueing.services.store import datetime_to_ms
from wartiket import qr

HOME_SLOTS_PER_LOCATION = 3


@dataclass(frozen=True)
class SlotCard:
    """One slot as a page shows it: the model plus its live state at render time."""

    slot: Slot
    live: live.LiveState

    @property
    def state(self) -> str:
        return self.live.state

    @property
    def remaining(self) -> int | None:
        return self.live.remaining

    @property
    def is_over(self) -> bool:
        return self.live.server_ms >= self.live.closes_ms


def upcoming_slots(location: Location | None = None) -> QuerySet[Slot]:
    slots = Slot.objects.visible().upcoming()
    if location is not None:
        slots = slots.filter(location=location)
    return slots.order_by("date", "time_label", "location__name")


def cards_for(slots: Iterable[Slot]) -> tuple[list[SlotCard], int]:
    """Cards for the slots and the server clock (epoch ms) they were read at."""
    slots = list(slots)
    states = live.read_states([catalog.ref_for(slot) for slot in slots])
    now_ms = next(iter(states.values())).server_ms if states else clock.redis_now_ms()
    return [SlotCard(slot, states[slot.pk]) for slot in slots], now_ms


# Open wars the home page lists under "Sedang dibuka" (the location cards list the rest).
HOME_OPEN_WARS = 4


@dataclass(frozen=True)
class HomePage:
    # Wars open right now with seats left, the longest-open first (they sell out soonest).
    open_wars: list[SlotCard]
    # The war that opens next: never one that is already open.
    next_war: SlotCard | None
    locations: list[tuple[Location, list[SlotCard]]]
    server_ms: int
    # The buyer's holding tickets for today and later, soonest first (empty for visitors).
    my_tickets: list[Ticket]

    @property
    def lead_war(self) -> SlotCard | None:
        """Where ``/war/`` sends a newcomer: a war open now, else the next to open."""
        return self.open_wars[0] if self.open_wars else self.next_war


def _war_order(card: SlotCard) -> tuple:
    # Open wars with seats left first (a buyer can act now), then the soonest to open.
    return (card.state != live.OPEN, card.live.opens_ms)


def upcoming_tickets(user: User | AnonymousUser) -> list[Ticket]:
    if not user.is_authenticated:
        return []
    return list(
        Ticket.objects.select_related("slot", "slot__location")
        .filter(user=user, status__in=Ticket.HOLDING, war_day__gte=timezone.localdate())
        .order_by("slot__date", "slot__time_label")
    )


def home(user: User | AnonymousUser | None = None) -> HomePage:
    cards, now_ms = cards_for(upcoming_slots())
    open_wars = sorted((c for c in cards if c.state == live.OPEN), key=lambda c: c.live.opens_ms)
    upcoming = [c for c in cards if c.state == live.UPCOMING]
    next_war = min(upcoming, key=lambda c: c.live.opens_ms) if upcoming else None
    locations = []
    by_location: dict[int, list[SlotCard]] = {}
    for card in cards:
        if not card.is_over:
            by_location.setdefault(card.slot.location_id, []).append(card)
    for location in Location.objects.visible().order_by("name"):
        mine = sorted(by_location.get(location.pk, []), key=_war_order)[:HOME_SLOTS_PER_LOCATION]
        locations.append((location, sorted(mine, key=lambda c: (c.slot.date, c.slot.time_label))))
    tickets = upcoming_tickets(user) if user is not None else []
    return HomePage(open_wars[:HOME_OPEN_WARS], next_war, locations, now_ms, tickets)


@dataclass(frozen=True)
class LocationPage:
    location: Location
    days: list[tuple[datetime.date, list[SlotCard]]]
    server_ms: int


def location_page(location: Location) -> LocationPage:
    cards, now_ms = cards_for(upcoming_slots(location))
    days = [(day, list(group)) for day, group in groupby(cards, key=lambda c: c.slot.date)]
    return LocationPage(location, days, now_ms)


# At most this many other slots are offered on a war page that is sold out or closed.
OTHER_SLOTS_SHOWN = 5
# Candidates read for them (nearest first): a location can list many days ahead.
OTHER_SLOTS_READ = 30


@dataclass(frozen=True)
class DrawPanel:
    """What the war page of a draw slot shows besides the live state: the window, the draw, your entry."""

    entry_opens_at: datetime.datetime
    draw_at: datetime.datetime
    commitment: str
    entry: DrawEntry | None

    def config(self) -> dict:
        """For war.js: times in epoch ms (its clock is the server's), the entry as far as the page needs it."""
        entry = self.entry
        return {
            "entry_opens_ms": datetime_to_ms(self.entry_opens_at),
            "draw_ms": datetime_to_ms(self.draw_at),
            "commitment": self.commitment,
            "entry": None
            if entry is None
            else {
                "pseudonym": entry.pseudonym,
                "outcome": entry.outcome,
                "waitlist_position": entry.waitlist_position,
            },
        }


def draw_panel(slot: Slot, user: User | AnonymousUser) -> DrawPanel | None:
    if not slot.is_draw:
        return None
    draw = draws.ensure_draw(slot.pk)
    entry = None
    if user.is_authenticated:
        entry = DrawEntry.objects.filter(slot=slot, user=user).first()
    return DrawPanel(slot.entry_opens_at, slot.draw_at, draw.commitment, entry)


@dataclass(frozen=True)
class WarPage:
    card: SlotCard
    # The buyer's holding ticket for this slot, if any.
    ticket: Ticket | None
    # The buyer's holding ticket for another slot on the same war day, if any.
    other_ticket_today: Ticket | None
    # That other ticket refuses this slot (one holding ticket per person per war day): the button is off.
    blocked: bool
    # Other slots at this location or on this day whose war is open with seats or still to come: where a
    # buyer goes when this one is sold out or closed.
    other_slots: list[SlotCard]
    # Draw mode: the slot's draw and the buyer's entry in it (None for first-come slots).
    draw: DrawPanel | None = None

    @property
    def phase(self) -> str:
        """The panel's state at render: upcoming, open, sold_out, closed, or one_per_day (blocked)."""
        if self.blocked:
            return "one_per_day"
        if self.card.state == live.SOLD_OUT and self.card.is_over:
            # Sold out and past its close: nothing comes back any more, so it reads as closed.
            return live.CLOSED
        return self.card.state


def _other_slot_candidates(slot: Slot) -> list[Slot]:
    nearby = Q(location_id=slot.location_id) | Q(date=slot.date)
    return list(upcoming_slots().filter(nearby).exclude(pk=slot.pk)[:OTHER_SLOTS_READ])


def war_page(slot: Slot, user: User | AnonymousUser) -> WarPage:
    cards, _now = cards_for([slot, *_other_slot_candidates(slot)])
    card, others = cards[0], cards[1:]
    alternatives = sorted(
        (c for c in others if c.state in (live.OPEN, live.UPCOMING) and not c.is_over),
        # Same boutique first (the buyer chose it), then open before upcoming, then soonest.
        key=lambda c: (c.slot.location_id != slot.location_id, c.state != live.OPEN, c.live.opens_ms),
    )[:OTHER_SLOTS_SHOWN]
    ticket = other = None
    if user.is_authenticated:
        holding = (
            Ticket.objects.select_related("slot", "slot__location")
            .filter(user=user, status__in=Ticket.HOLDING, war_day=slot.date)
            .order_by("slot__time_label")
        )
        for held in holding:
            if held.slot_id == slot.pk:
                ticket = held
            elif other is None:
                other = held
    # Only a ticket issued under the one-per-day rule counts against the day, and only while the rule is on.
    blocked = bool(ticket is None and other is not None and other.one_per_day and settings.WAR_ONE_PER_DAY)
    return WarPage(card, ticket, other, blocked, alternatives, draw_panel(slot, user))


def war_hints() -> dict[str, str]:
    """The sentence under the war button for each state the panel can be in (the page's script swaps them)."""
    return {
        live.UPCOMING: _("Tombol aktif tepat saat war dibuka. Satu klik sudah cukup."),
        live.OPEN: _("War sedang dibuka. Satu klik sudah cukup; jangan klik berulang-ulang."),
        live.SOLD_OUT: _(
            "Semua nomor sudah diambil. Jika seseorang membatalkan tiketnya, nomornya muncul lagi di halaman "
            "ini secara langsung dan tombol aktif kembali, tanpa perlu memuat ulang."
        ),
        live.CLOSED: _("War slot ini sudah ditutup. Tidak ada nomor lagi yang dibagikan."),
    }


def guest_hints() -> dict[str, str]:
    """What a visitor without an account is told after "Belum punya akun? Daftar dulu —", per state."""
    return {
        live.UPCOMING: _("siapkan sebelum war dibuka."),
        live.OPEN: _("hanya sekali, lalu Anda kembali ke halaman ini."),
        live.SOLD_OUT: _("untuk war berikutnya."),
        live.CLOSED: _("untuk war berikutnya."),
    }


def my_tickets(user: User) -> list[Ticket]:
    return list(
        Ticket.objects.select_related("slot", "slot__location")
        .filter(user=user)
        .order_by("-slot__date", "-slot__time_label", "-created_at")
    )


def qr_svg(code: str) -> SafeString:
    """The ticket code as an inline SVG QR image, sized by CSS (staff scan it at check-in)."""
    return qr.qr_svg(code, _("Kode QR tiket %(code)s") % {"code": code}, css_class="qr")


def state_labels() -> dict[str, str]:
    """The badge words for each state, and the countdown's "days", for the pages' scripts."""
    return {
        live.UPCOMING: _("Segera"),
        live.OPEN: _("Dibuka"),
        live.SOLD_OUT: _("Habis"),
        live.CLOSED: _("Ditutup"),
        "days": _("%(n)s hari"),
    }


# What a buyer should do after each refusal, next to the engine's message for it.
def failure_guide() -> dict[str, dict]:
    """Per error code: the message, what to do next, and which action the page offers."""
    nexts = {
        "sold_out": (_("Coba slot lain di lokasi ini atau hari lain."), "other_slots"),
        "one_per_day": (_("Satu orang hanya boleh memegang satu antrean per hari. Lihat tiket Anda."), "ticket"),
        "too_early": (_("Jam perangkat Anda mungkin tidak tepat. Hitung mundur sudah disesuaikan."), "back"),
        "closed": (_("Pilih slot lain yang war-nya belum ditutup."), "other_slots"),
        "rate_limited": (_("Tunggu hitung mundur lalu coba lagi. Jangan klik berulang-ulang."), "retry"),
        "unavailable": (_("Server sedang sibuk. Tombol akan aktif lagi sebentar lagi."), "retry"),
        "not_ready": (_("War sedang disiapkan. Tombol akan aktif lagi sebentar lagi."), "retry"),
        "nik_required": (_("Isi NIK di profil, lalu kembali ke halaman ini."), "profile"),
        "not_authenticated": (_("Sesi Anda berakhir. Masuk lagi untuk ikut war."), "login"),
        "csrf_failed": (_("Muat ulang halaman ini lalu coba lagi."), "reload"),
        # The page solves a fresh challenge right after each attempt; the retry waits for it if needed.
        "challenge_required": (_("Halaman sedang menyiapkan pemeriksaan anti-bot. Coba lagi."), "retry"),
        "challenge_invalid": (_("Halaman sedang menyiapkan pemeriksaan anti-bot baru. Coba lagi."), "retry"),
        "network": (_("Periksa koneksi internet Anda lalu coba lagi."), "retry"),
    }
    guide = {}
    for code, (status, message) in ERRORS.items():
        text, action = nexts.get(code, (_("Muat ulang halaman lalu coba lagi."), "reload"))
        guide[code] = {"status": status, "message": str(message), "next": text, "action": action}
    guide["network"] = {
        "status": 0,
        "message": _("Tidak dapat menghubungi server."),
        "next": nexts["network"][0],
        "action": "retry",
    }
    return guide
