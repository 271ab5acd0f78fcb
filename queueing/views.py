"""Server-rendered buyer pages. Each view calls one service and renders; the war itself is POST /api/war."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from queueing.models import Challenge, DrawEntry, Location, Slot
from queueing.services import draws, live, pages, reservations
from queueing.services.errors import ReservationError

# The refusals a buyer can meet on the war page, for the Dev Controls' "Failure" button.
DEV_FAILURE_CODES = [
    "sold_out",
    "one_per_day",
    "too_early",
    "rate_limited",
    "unavailable",
    "closed",
    "nik_required",
    "challenge_invalid",
    "network",
]


def home(request):
    context = {
        "page": pages.home(request.user),
        # The demo login is for someone who has none yet.
        "demo_login": None if request.user.is_authenticated else _demo_login(),
        "state_labels": pages.state_labels(),
    }
    return render(request, "queueing/home.html", context)


def location(request, slug: str):
    place = get_object_or_404(Location.objects.visible(), slug=slug)
    context = {"page": pages.location_page(place), "state_labels": pages.state_labels()}
    return render(request, "queueing/location.html", context)


def draw_page(request, slot_id: int):
    """``/draw/<id>/``: a draw slot's public record and how to check it (docs/fairness.md). No login."""
    slot = Slot.objects.visible().filter(pk=slot_id).first()
    if slot is None or not slot.is_draw:
        raise Http404
    record = draws.published(slot)
    labels = dict(DrawEntry.Outcome.choices)
    entrants = [{**entry, "label": labels.get(entry["outcome"], entry["outcome"])} for entry in record["entrants"]]
    api_url = request.build_absolute_uri(reverse("api:slot-draw", args=[slot.pk]))
    context = {"slot": slot, "record": record, "entrants": entrants, "snippet": draws.verify_snippet(api_url)}
    return render(request, "queueing/draw.html", context)


def next_war(request):
    """``/war/``: straight to the war a newcomer wants (open now, else opening soonest)."""
    lead = pages.home().lead_war
    if lead is None:
        return redirect("queueing:home")
    return redirect("queueing:war", slot_id=lead.slot.pk)


@never_cache
@ensure_csrf_cookie
def war(request, slot_id: int):
    # Rehearsal and inactive locations' wars are not for buyers (staff watch them in the war room).
    slot = get_object_or_404(Slot.objects.visible(), pk=slot_id)
    page = pages.war_page(slot, request.user)
    user = request.user
    hints, guest_hints = pages.war_hints(), pages.guest_hints()
    config = {
        "slot": {
            "id": slot.pk,
            "location": slot.location.slug,
            "date": slot.date.isoformat(),
            "time_slot": slot.time_label,
        },
        "state": page.card.live.message(),
        "ws_path": f"/ws/slots/{slot.pk}/",
        "urls": {
            "state": reverse("queueing:war-state", args=[slot.pk]),
            "time": reverse("api:time"),
            "war": reverse("api:war"),
            "tickets": reverse("queueing:tickets"),
            "location": reverse("queueing:location", args=[slot.location.slug]),
            "login": f"{settings.LOGIN_URL}?next={request.path}",
            "profile": f"{reverse('accounts:profile')}?next={request.path}",
        },
        "authenticated": user.is_authenticated,
        "has_nik": bool(user.is_authenticated and user.nik),
        "ticket": _ticket_json(page.ticket),
        # Holding another slot's ticket that day: the button stays off whatever the live state says.
        "blocked": page.blocked,
        "hints": hints,
        "guest_hints": guest_hints,
        "guide": pages.failure_guide(),
        "strings": _war_strings(slot),
        "time_zone": settings.TIME_ZONE,
        "icon": static("img/icon-192.png"),
        "dev_controls": settings.DEBUG,
        # Draw mode: the entry window, the draw time and the buyer's entry (war.js's draw views).
        "draw": page.draw.config() if page.draw else None,
        # Proof of work (static/js/war-proof.js): solved during the countdown when the slot asks for one.
        "challenge": {
            "required": slot.challenge != Challenge.OFF,
            "url": f"{reverse('api:challenge')}?slot={slot.pk}",
            "worker": static("vendor/altcha/altcha-worker-pbkdf2.js"),
        }
        if settings.WAR_POW_ENABLED
        else None,
    }
    return render(
        request,
        "queueing/war.html",
        {
            "page": page,
            "slot": slot,
            "hint": hints.get(page.phase, ""),
            "guest_hint": guest_hints.get(page.phase, ""),
            "config": config,
            "draw": page.draw,
            "war_requires_nik": settings.WAR_REQUIRE_NIK,
            "dev_controls": settings.DEBUG,
            "dev_failure_codes": DEV_FAILURE_CODES,
            "state_labels": pages.state_labels(),
        },
    )


@require_GET
@never_cache
def war_state(request, slot_id: int):
    """The live state as the socket sends it: pages poll this while their socket is down."""
    state = live.read_state(slot_id)
    if state is None:
        raise Http404
    return JsonResponse(state.message())


@login_required
def tickets(request):
    mine = pages.my_tickets(request.user)
    return render(
        request,
        "queueing/tickets.html",
        {"tickets": [(t, pages.qr_svg(t.code) if t.is_holding else None) for t in mine]},
    )


@login_required
@require_POST
def cancel_ticket(request, code: str):
    try:
        result = reservations.cancel(request.user.id, code)
    except ReservationError as exc:
        messages.error(request, exc.message)
    else:
        done = _("Tiket %(code)s dibatalkan. Nomornya kini bisa diambil orang lain.") % {"code": result.code}
        messages.success(request, done)
    return redirect("queueing:tickets")


def _demo_login() -> tuple[str, str] | None:
    """With DEBUG, the seeded buyer's login on the home page, so a newcomer can try the demo war at once."""
    if not settings.DEBUG:
        return None
    from accounts.models import User
    from queueing.services.demo import BUYERS

    email, password = BUYERS[0][:2]
    return (email, password) if User.objects.filter(email=email).exists() else None


def _ticket_json(ticket) -> dict | None:
    if ticket is None:
        return None
    return {"code": ticket.code, "queue_number": ticket.queue_number}


def _war_strings(slot: Slot) -> dict[str, str]:
    """Every sentence war.js writes, translated here (the page has no JavaScript catalog)."""
    return {
        "opens_in": _("War dibuka dalam"),
        "days": pages.state_labels()["days"],
        "open": _("War dibuka! Ambil antrean sekarang."),
        "take": _("Ambil Antrean"),
        "taking": _("Mengambil antrean…"),
        "wait": _("Tunggu hitung mundur"),
        "sold_out": _("Kuota habis"),
        "blocked": _("Sudah punya antrean hari ini"),
        "closed": _("War sudah ditutup"),
        "live": _("Langsung"),
        "reconnecting": _("Menyambung ulang…"),
        "retry": _("Coba lagi"),
        "retry_in": _("Coba lagi dalam %(n)s detik"),
        "already": _("Anda sudah memegang nomor ini. Nomor tidak berubah."),
        "unknown": _("—"),
        "login_first": _("Masuk untuk ikut war"),
        "nik_first": _("Lengkapi NIK dulu"),
        "connecting": _("Menghubungkan…"),
        "other_slots": _("Lihat slot lain"),
        "see_ticket": _("Lihat tiket Anda"),
        "to_profile": _("Buka profil"),
        "reload": _("Muat ulang halaman"),
        # The opt-in alerts' notifications (war.js).
        "alert_open_title": _("War dibuka!"),
        "alert_open_body": _("%(place)s jam %(time)s: ambil antrean sekarang.")
        % {"place": slot.location.name, "time": slot.time_label},
        "alert_success_title": _("Berhasil! Nomor antrean %(n)s"),
        "alert_success_body": _("Buka halaman untuk melihat kode tiket Anda."),
        "alert_failure_title": _("Belum dapat nomor"),
        # Draw mode (war.js): the entry window, the entry, the draw and its result.
        "entry_opens_in": _("Pendaftaran undian dibuka dalam"),
        "entry_open": _("Pendaftaran undian dibuka. Semua yang mendaftar sebelum undian punya peluang sama."),
        "enter": _("Ikut Undian"),
        "entering": _("Mendaftarkan…"),
        "drawing": _("Undian sedang ditarik…"),
        "draw_in": _("Undian ditarik dalam"),
        "draw_now": _("Mengundi… hasilnya muncul di sini sebentar lagi."),
        "hint_entry_upcoming": _("Tombol aktif saat pendaftaran dibuka. Mendaftar lebih awal tidak menambah peluang."),
        "hint_entry_open": _("Satu klik sudah cukup. Urutan ditentukan undian, bukan kecepatan."),
        "hint_drawing": _("Pendaftaran sudah ditutup; hasil undian segera keluar."),
        "alert_entered_title": _("Anda terdaftar dalam undian"),
        "alert_waitlist_title": _("Daftar tunggu nomor %(n)s"),
    }
