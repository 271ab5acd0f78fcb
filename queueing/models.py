from __future__ import annotations

import base64
import datetime
import re
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

TIME_LABEL_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# Characters of a ticket code: Crockford base32 (no I, L, O, U) so codes read aloud without confusion.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def validate_time_label(value: str) -> None:
    if not TIME_LABEL_RE.match(value or ""):
        raise ValidationError(_("Jam harus berformat HH:MM, misalnya 10:00."), code="time_label")


def new_ticket_code() -> str:
    """An unguessable code (60 random bits), printed as XXXX-XXXX-XXXX.

    Every war attempt draws one (the script keeps it only if the attempt wins), so it is made the cheap
    way: one getrandom() call, base32 in C, and one translation into Crockford's alphabet.
    """
    raw = base64.b32encode(secrets.token_bytes(8))[:12].translate(_TO_CROCKFORD).decode()
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CODE_ALPHABET.encode())


class LocationQuerySet(models.QuerySet):
    def visible(self) -> LocationQuerySet:
        """Locations buyers see: active, and not the rehearsal location ``simulate_war`` writes to."""
        return self.filter(active=True, is_rehearsal=False)


class Location(models.Model):
    slug = models.SlugField(
        _("kode lokasi"), max_length=64, unique=True, help_text=_("Dipakai di API dan alamat halaman, mis. graha-dipta")
    )
    name = models.CharField(_("nama"), max_length=120)
    address = models.CharField(_("alamat"), max_length=255, blank=True)
    active = models.BooleanField(_("aktif"), default=True, help_text=_("Nonaktif: disembunyikan dari pembeli."))
    # Set on the location `simulate_war` and `make bench` create: its slots fall on real war days, so
    # without the flag buyers would see the rehearsal on the home page, in the API and at its URL.
    is_rehearsal = models.BooleanField(
        _("lokasi latihan"), default=False, help_text=_("Disembunyikan dari pembeli; staf tetap melihatnya.")
    )

    objects = LocationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("lokasi")
        verbose_name_plural = _("lokasi")

    def __str__(self) -> str:
        return self.name


# A war stays current this long after it closed: the war API still resolves it (late callers hear "closed",
# not "unknown slot"), pages and /api/slots still list it as closed, heal and reconcile still look after it.
KEEP_AFTER_CLOSE = datetime.timedelta(days=2)


class SlotQuerySet(models.QuerySet):
    """Which slots: the one place each caller's choice is written.

    ``visible()`` (buyers) and ``resolvable()`` (the war API) say *where*; ``upcoming()`` says *when*.
    Combine them: pages and ``/api/slots`` list ``visible().upcoming()``, the war catalog holds
    ``resolvable().upcoming()``, heal and reconcile keep Redis right for every ``upcoming()`` slot.
    """

    def visible(self) -> SlotQuerySet:
        """Slots buyers may see (pages, ``/api/slots``, Telegram): at active, non-rehearsal locations."""
        return self.select_related("location").filter(location__active=True, location__is_rehearsal=False)

    def resolvable(self) -> SlotQuerySet:
        """Slots the war API may resolve: at active locations, the rehearsal location included."""
        return self.select_related("location").filter(location__active=True)

    def upcoming(self, now: datetime.datetime | None = None) -> SlotQuerySet:
        """Slots whose war is not over, or over for less than ``KEEP_AFTER_CLOSE``."""
        return self.closing_after((now or timezone.now()) - KEEP_AFTER_CLOSE)

    def closing_after(self, moment: datetime.datetime) -> SlotQuerySet:
        """Slots whose war closes after ``moment`` (``Slot.closes_at > moment``), decided in SQL.

        ``closes_at`` is ``war_closes_at``, else the slot's start: its date and HH:MM label in the default
        time zone, minute precision. A start is after ``moment`` exactly when (date, label) is after
        ``moment``'s local date and minute; zero-padded labels compare as strings. (Asia/Jakarta has no
        daylight saving, so local minutes are unambiguous.)
        """
        local = timezone.localtime(moment, timezone.get_default_timezone())
        label = f"{local:%H:%M}"
        starts_after = Q(date__gt=local.date()) | Q(date=local.date(), time_label__gt=label)
        return self.filter(Q(war_closes_at__gt=moment) | (Q(war_closes_at__isnull=True) & starts_after))


class Allocation(models.TextChoices):
    FCFS = "fcfs", _("siapa cepat dia dapat")
    DRAW = "draw", _("undian")


class Challenge(models.TextChoices):
    OFF = "off", _("mati")
    ON = "on", _("nyala")
    HOT = "hot", _("nyala, lebih berat")


class Slot(models.Model):
    """One visiting time at one boutique on one day, with the war that hands out its queue numbers."""

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="slots", verbose_name=_("lokasi"))
    date = models.DateField(_("tanggal"), help_text=_("Hari kunjungan"))
    time_label = models.CharField(
        _("jam kunjungan"), max_length=5, validators=[validate_time_label], help_text=_("JJ:MM")
    )
    quota = models.PositiveIntegerField(_("kuota"), validators=[MinValueValidator(1)])
    war_opens_at = models.DateTimeField(_("war dibuka"), help_text=_("Detik war dibuka, menurut jam server"))
    war_closes_at = models.DateTimeField(
        _("war ditutup"), null=True, blank=True, help_text=_("Kosong: war ditutup saat slot dimulai")
    )
    allocation = models.CharField(
        _("cara pembagian"),
        max_length=8,
        choices=Allocation.choices,
        default=Allocation.FCFS,
        help_text=_("Siapa cepat dia dapat, atau undian di antara yang mendaftar sebelum undian ditarik"),
    )
    draw_grace_seconds = models.PositiveIntegerField(
        _("tenggang undian (detik)"),
        default=10,
        help_text=_("Undian: pendaftaran ditutup dan undian ditarik sekian detik setelah war dibuka"),
    )
    challenge = models.CharField(
        _("tantangan anti-bot"),
        max_length=4,
        choices=Challenge.choices,
        default=Challenge.OFF,
        help_text=_("Proof of work (ALTCHA) untuk setiap percobaan war dan pendaftaran undian"),
    )
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)

    objects = SlotQuerySet.as_manager()

    class Meta:
        ordering = ["date", "time_label", "location__name"]
        verbose_name = _("slot")
        verbose_name_plural = _("slot")
        constraints = [
            models.UniqueConstraint(fields=["location", "date", "time_label"], name="slot_unique_per_location"),
            models.CheckConstraint(condition=Q(quota__gte=1), name="slot_quota_positive"),
            models.CheckConstraint(
                condition=Q(war_closes_at__isnull=True) | Q(war_closes_at__gt=models.F("war_opens_at")),
                name="slot_closes_after_opens",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.location} {self.date:%Y-%m-%d} {self.time_label}"

    @property
    def starts_at(self) -> datetime.datetime:
        hour, minute = (int(x) for x in self.time_label.split(":"))
        return datetime.datetime.combine(self.date, datetime.time(hour, minute), tzinfo=timezone.get_default_timezone())

    @property
    def closes_at(self) -> datetime.datetime:
        """When the war is over: the explicit close, else the moment the slot itself starts."""
        return self.war_closes_at or self.starts_at

    @property
    def is_draw(self) -> bool:
        return self.allocation == Allocation.DRAW

    @property
    def entry_opens_at(self) -> datetime.datetime:
        """Draw mode: when entries are first taken (``WAR_DRAW_ENTRY_MINUTES`` before the war opens)."""
        return self.war_opens_at - datetime.timedelta(minutes=settings.WAR_DRAW_ENTRY_MINUTES)

    @property
    def draw_at(self) -> datetime.datetime:
        """Draw mode: when entries close and the draw is made."""
        return self.war_opens_at + datetime.timedelta(seconds=self.draw_grace_seconds)

    @property
    def war_day(self) -> str:
        """The day whose one-ticket-per-person rule this slot falls under, and its Redis hash tag."""
        return self.date.isoformat()

    def is_open_at(self, moment: datetime.datetime) -> bool:
        return self.war_opens_at <= moment < self.closes_at

    def clean(self):
        super().clean()
        if self.war_opens_at and self.date and self.time_label and TIME_LABEL_RE.match(self.time_label):
            if self.war_closes_at and self.war_closes_at <= self.war_opens_at:
                raise ValidationError({"war_closes_at": _("Penutupan harus setelah pembukaan.")})
            if self.war_opens_at >= self.closes_at:
                raise ValidationError({"war_opens_at": _("War harus dibuka sebelum slot dimulai.")})
            if self.is_draw and self.draw_at >= self.closes_at:
                raise ValidationError({"draw_grace_seconds": _("Undian harus ditarik sebelum war ditutup.")})


class Ticket(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("aktif")
        CANCELLED = "cancelled", _("dibatalkan")
        CHECKED_IN = "checked_in", _("sudah hadir")

    # A ticket holds its seat (and its number) while active or checked in.
    HOLDING = [Status.ACTIVE, Status.CHECKED_IN]

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="tickets", verbose_name=_("slot"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tickets", verbose_name=_("pembeli")
    )
    queue_number = models.PositiveIntegerField(_("nomor antrean"))
    code = models.CharField(_("kode"), max_length=14, unique=True, default=new_ticket_code, editable=False)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.ACTIVE)
    # Who the ticket was issued to, as a person rather than an account: "nik:<NIK>" (or "user:<id>" for an
    # account without a NIK when NIKs are not required), frozen at reservation. One person, one ticket per
    # war day holds in PostgreSQL on this key, whatever Redis says and whatever the account does later.
    person = models.CharField(_("orang"), max_length=40)
    # The day whose one-ticket-per-person rule the ticket falls under (its slot's date), copied so that a
    # partial unique index can enforce the rule without a join.
    war_day = models.DateField(_("hari war"))
    # Issued while WAR_ONE_PER_DAY was on: only such tickets take part in the per-day constraint.
    one_per_day = models.BooleanField(_("satu per hari"), default=True)
    reserved_at = models.DateTimeField(_("diambil pada"), help_text=_("Jam Redis saat nomor diberikan"))
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)
    cancelled_at = models.DateTimeField(_("dibatalkan pada"), null=True, blank=True)

    class Meta:
        ordering = ["slot", "queue_number"]
        verbose_name = _("tiket")
        verbose_name_plural = _("tiket")
        # The last line of defence, whatever Redis says. The upper bound (queue_number <= slot.quota)
        # spans two tables, so a trigger in migration 0002 enforces it.
        constraints = [
            models.UniqueConstraint(
                fields=["slot", "user"],
                condition=Q(status__in=["active", "checked_in"]),
                name="ticket_one_holding_per_user_slot",
            ),
            models.UniqueConstraint(
                fields=["slot", "person"],
                condition=Q(status__in=["active", "checked_in"]),
                name="ticket_one_holding_per_person_slot",
            ),
            models.UniqueConstraint(
                fields=["person", "war_day"],
                condition=Q(status__in=["active", "checked_in"], one_per_day=True),
                name="ticket_one_holding_per_person_day",
            ),
            # The same per account: a ticket keeps the person it was issued to, so an account whose NIK
            # staff changed afterwards is still held to one ticket that day.
            models.UniqueConstraint(
                fields=["user", "war_day"],
                condition=Q(status__in=["active", "checked_in"], one_per_day=True),
                name="ticket_one_holding_per_user_day",
            ),
            models.UniqueConstraint(
                fields=["slot", "queue_number"],
                condition=Q(status__in=["active", "checked_in"]),
                name="ticket_unique_holding_number",
            ),
            models.CheckConstraint(condition=Q(queue_number__gte=1), name="ticket_number_positive"),
        ]
        indexes = [models.Index(fields=["user", "status"]), models.Index(fields=["war_day", "status"])]

    def __str__(self) -> str:
        return f"#{self.queue_number} {self.code}"

    def save(self, *args, **kwargs):
        # The reservation service passes both; anything else creating a ticket (admin, fixtures) gets
        # the same values from the slot and the account, at the cost of a query each.
        if self.war_day is None:
            self.war_day = self.slot.date
        if not self.person:
            self.person = self.user.person_key
        super().save(*args, **kwargs)

    @property
    def is_holding(self) -> bool:
        return self.status in self.HOLDING


class BypassToken(models.Model):
    """A QA/audit token that lets a request pass the time gate only (never quota, duplicate or rate)."""

    name = models.CharField(_("nama"), max_length=100)
    key_hash = models.CharField(_("hash kunci"), max_length=64, unique=True, editable=False)
    prefix = models.CharField(_("awalan"), max_length=8, editable=False)
    slot = models.ForeignKey(
        Slot,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        verbose_name=_("slot"),
        help_text=_("Kosong: berlaku untuk semua slot"),
    )
    expires_at = models.DateTimeField(_("kedaluwarsa"))
    revoked = models.BooleanField(_("dicabut"), default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("dibuat oleh"),
    )
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)

    class Meta:
        verbose_name = _("token bypass")
        verbose_name_plural = _("token bypass")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class BypassUse(models.Model):
    token = models.ForeignKey(BypassToken, on_delete=models.CASCADE, related_name="uses", verbose_name=_("token"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("pengguna")
    )
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="+", verbose_name=_("slot"))
    outcome = models.CharField(_("hasil"), max_length=32)
    used_at = models.DateTimeField(_("dipakai pada"), help_text=_("Jam Redis"))

    class Meta:
        ordering = ["-used_at"]
        verbose_name = _("pemakaian token bypass")
        verbose_name_plural = _("pemakaian token bypass")

    def __str__(self) -> str:
        return f"{self.token} used by {self.user_id} on slot {self.slot_id}: {self.outcome}"


class Draw(models.Model):
    """Draw mode: the one draw of a slot, with its commitment published before the entry window opens.

    ``seed`` stays secret until the draw; ``commitment = sha256(seed)`` is public from the start, so the
    seed cannot be changed once entrants are known (``queueing/services/draws.py``, docs/fairness.md).
    """

    slot = models.OneToOneField(Slot, on_delete=models.CASCADE, primary_key=True, related_name="draw")
    seed = models.CharField(_("benih rahasia"), max_length=64, editable=False)
    commitment = models.CharField(_("komitmen (sha256 benih)"), max_length=64, editable=False)
    entrants_hash = models.CharField(_("hash peserta"), max_length=64, blank=True, editable=False)
    entrants = models.PositiveIntegerField(_("peserta"), default=0)
    winners = models.PositiveIntegerField(_("pemenang"), default=0)
    waiting = models.PositiveIntegerField(_("daftar tunggu"), default=0)
    skipped = models.PositiveIntegerField(_("dilewati"), default=0)
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)
    # War-room figures: when the committing run began, when its transaction committed, and how long
    # from the scheduled draw_at until every winner's ticket was committed.
    started_at = models.DateTimeField(_("mulai diundi"), null=True, blank=True)
    drawn_at = models.DateTimeField(_("selesai diundi"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("lama pengundian (ms)"), null=True, blank=True)
    lag_ms = models.IntegerField(_("draw_at sampai semua tiket tersimpan (ms)"), null=True, blank=True)

    class Meta:
        verbose_name = _("undian")
        verbose_name_plural = _("undian")

    def __str__(self) -> str:
        return f"draw of slot {self.slot_id}"

    @property
    def is_drawn(self) -> bool:
        return self.drawn_at is not None


class DrawEntry(models.Model):
    """One person's entry in a slot's draw, durable before the buyer hears 202 ``entered``."""

    class Outcome(models.TextChoices):
        PENDING = "pending", _("menunggu undian")
        WON = "won", _("menang")
        WAITING = "waiting", _("daftar tunggu")
        PROMOTED = "promoted", _("naik dari daftar tunggu")
        SKIPPED = "skipped", _("dilewati (sudah punya tiket hari itu)")
        WITHDRAWN = "withdrawn", _("ditarik (akun dinonaktifkan staf)")

    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="draw_entries", verbose_name=_("slot"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="draw_entries", verbose_name=_("pembeli")
    )
    person = models.CharField(_("orang"), max_length=40)
    # Public per-slot alias of the person (services/draws.py ``pseudonym``): the draw orders by it.
    pseudonym = models.CharField(_("nama samaran"), max_length=16)
    entered_at = models.DateTimeField(_("mendaftar pada"), help_text=_("Jam Redis"))
    # Staff's abuse signals count entries per address (accounts/services/abuse.py); never published.
    client_ip = models.GenericIPAddressField(_("alamat IP"), null=True, blank=True)
    outcome = models.CharField(_("hasil"), max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    position = models.PositiveIntegerField(_("urutan undian"), null=True, blank=True)
    waitlist_position = models.PositiveIntegerField(_("posisi daftar tunggu"), null=True, blank=True)
    ticket = models.ForeignKey(Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["slot", "position", "pseudonym"]
        verbose_name = _("peserta undian")
        verbose_name_plural = _("peserta undian")
        constraints = [
            models.UniqueConstraint(fields=["slot", "person"], name="draw_entry_one_per_person"),
            models.UniqueConstraint(fields=["slot", "user"], name="draw_entry_one_per_user"),
            models.UniqueConstraint(fields=["slot", "pseudonym"], name="draw_entry_unique_pseudonym"),
        ]

    def __str__(self) -> str:
        return f"{self.pseudonym} ({self.outcome})"
