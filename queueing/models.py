from __future__ import annotations

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

    Every war attempt draws one (the script keeps it only if the attempt wins), so it takes all 60 bits
    from one getrandom() call rather than one call per character.
    """
    bits = int.from_bytes(secrets.token_bytes(8)) >> 4
    raw = "".join(CODE_ALPHABET[(bits >> shift) & 31] for shift in range(0, 60, 5))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


class LocationQuerySet(models.QuerySet):
    def visible(self) -> LocationQuerySet:
        """Locations buyers see: active, and not the rehearsal location ``simulate_war`` writes to."""
        return self.filter(active=True, is_rehearsal=False)


class Location(models.Model):
    slug = models.SlugField(max_length=64, unique=True, help_text="Used in the API, e.g. graha-dipta")
    name = models.CharField(max_length=120)
    address = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True)
    # Set on the location `simulate_war` and `make bench` create: its slots fall on real war days, so
    # without the flag buyers would see the rehearsal on the home page, in the API and at its URL.
    is_rehearsal = models.BooleanField(
        _("lokasi latihan"), default=False, help_text=_("Disembunyikan dari pembeli; staf tetap melihatnya.")
    )

    objects = LocationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SlotQuerySet(models.QuerySet):
    def visible(self) -> SlotQuerySet:
        """Slots buyers may see (pages, ``/api/slots``): at active, non-rehearsal locations, location joined."""
        return self.select_related("location").filter(location__active=True, location__is_rehearsal=False)


class Slot(models.Model):
    """One visiting time at one boutique on one day, with the war that hands out its queue numbers."""

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="slots")
    date = models.DateField(help_text="Day of the visit")
    time_label = models.CharField(max_length=5, validators=[validate_time_label], help_text="HH:MM")
    quota = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    war_opens_at = models.DateTimeField(help_text="The second the war opens, by the server clock")
    war_closes_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the war closes when the slot starts")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SlotQuerySet.as_manager()

    class Meta:
        ordering = ["date", "time_label", "location__name"]
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


class Ticket(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("aktif")
        CANCELLED = "cancelled", _("dibatalkan")
        CHECKED_IN = "checked_in", _("sudah hadir")

    # A ticket holds its seat (and its number) while active or checked in.
    HOLDING = [Status.ACTIVE, Status.CHECKED_IN]

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="tickets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tickets")
    queue_number = models.PositiveIntegerField()
    code = models.CharField(max_length=14, unique=True, default=new_ticket_code, editable=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    # Who the ticket was issued to, as a person rather than an account: "nik:<NIK>" (or "user:<id>" for an
    # account without a NIK when NIKs are not required), frozen at reservation. One person, one ticket per
    # war day holds in PostgreSQL on this key, whatever Redis says and whatever the account does later.
    person = models.CharField(max_length=40)
    # The day whose one-ticket-per-person rule the ticket falls under (its slot's date), copied so that a
    # partial unique index can enforce the rule without a join.
    war_day = models.DateField()
    # Issued while WAR_ONE_PER_DAY was on: only such tickets take part in the per-day constraint.
    one_per_day = models.BooleanField(default=True)
    reserved_at = models.DateTimeField(help_text="Redis clock at the moment the number was assigned")
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["slot", "queue_number"]
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

    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False)
    slot = models.ForeignKey(
        Slot, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: valid for every slot"
    )
    expires_at = models.DateTimeField()
    revoked = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class BypassUse(models.Model):
    token = models.ForeignKey(BypassToken, on_delete=models.CASCADE, related_name="uses")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="+")
    outcome = models.CharField(max_length=32)
    used_at = models.DateTimeField(help_text="Redis clock")

    class Meta:
        ordering = ["-used_at"]

    def __str__(self) -> str:
        return f"{self.token} used by {self.user_id} on slot {self.slot_id}: {self.outcome}"
