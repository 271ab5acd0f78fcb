from __future__ import annotations

import datetime

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from queueing.models import TIME_LABEL_RE, Slot, Ticket
from queueing.services import draws


class WarRequestSerializer(serializers.Serializer):
    """The seed's body: ``{"location_id": "graha-dipta", "time_slot": "10:00"}`` plus optional date."""

    # The OpenAPI schema's description only: the war endpoint checks bodies with queueing.war_endpoint.war_fields
    # (tests keep that within what this accepts).

    location_id = serializers.SlugField(max_length=64)
    time_slot = serializers.RegexField(
        TIME_LABEL_RE, max_length=5, error_messages={"invalid": _("Jam harus berformat HH:MM, misalnya 10:00.")}
    )
    date = serializers.DateField(required=False)
    # Accepted for compatibility with the seed's curl; must name the caller, never someone else.
    user_id = serializers.JSONField(required=False)

    def validate_user_id(self, value):
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise serializers.ValidationError(_("Harus berupa teks atau bilangan bulat."))
        return str(value)


class SlotSerializer(serializers.ModelSerializer):
    location = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    location_name = serializers.CharField(source="location.name", read_only=True)
    time_slot = serializers.CharField(source="time_label", read_only=True)
    war_closes_at = serializers.DateTimeField(source="closes_at", read_only=True)
    remaining = serializers.SerializerMethodField()
    # Draw mode (null for first come, first served): when entries open and when the draw is made.
    entry_opens_at = serializers.SerializerMethodField()
    draw_at = serializers.SerializerMethodField()

    class Meta:
        model = Slot
        fields = [
            "id",
            "location",
            "location_name",
            "date",
            "time_slot",
            "quota",
            "remaining",
            "war_opens_at",
            "war_closes_at",
            "challenge",  # off / on / hot: whether a war attempt needs X-Altcha (GET /api/challenge?slot=<id>)
            "allocation",
            "entry_opens_at",
            "draw_at",
        ]

    def get_remaining(self, slot) -> int | None:
        return self.context.get("remaining", {}).get(slot.pk)

    def get_entry_opens_at(self, slot) -> datetime.datetime | None:
        return serializers.DateTimeField().to_representation(slot.entry_opens_at) if slot.is_draw else None

    def get_draw_at(self, slot) -> datetime.datetime | None:
        return serializers.DateTimeField().to_representation(slot.draw_at) if slot.is_draw else None


class TicketSerializer(serializers.ModelSerializer):
    location = serializers.CharField(source="slot.location.slug", read_only=True)
    location_name = serializers.CharField(source="slot.location.name", read_only=True)
    date = serializers.DateField(source="slot.date", read_only=True)
    time_slot = serializers.CharField(source="slot.time_label", read_only=True)
    allocation = serializers.CharField(source="slot.allocation", read_only=True)
    draw_pseudonym = serializers.SerializerMethodField(
        help_text="Draw slots: your alias in the draw's public list (GET /api/slots/<id>/draw); else null"
    )

    class Meta:
        model = Ticket
        fields = [
            "code",
            "queue_number",
            "status",
            "location",
            "location_name",
            "date",
            "time_slot",
            "reserved_at",
            "allocation",
            "draw_pseudonym",
        ]

    def get_draw_pseudonym(self, ticket) -> str | None:
        return draws.pseudonym(ticket.slot_id, ticket.person) if ticket.slot.is_draw else None


# --- Response bodies, for the OpenAPI schema (the views build them as plain dicts on the hot path) ---------


class WarTicketSerializer(serializers.Serializer):
    """The ticket in a war answer (``Reservation.ticket_json``)."""

    code = serializers.CharField(help_text="XXXX-XXXX-XXXX; shown at check-in")
    queue_number = serializers.IntegerField(min_value=1)
    location = serializers.CharField()
    location_name = serializers.CharField()
    date = serializers.DateField()
    time_slot = serializers.CharField()
    reserved_at = serializers.DateTimeField()


class WarResultSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=["reserved", "already_reserved"])
    ticket = WarTicketSerializer()
    remaining = serializers.IntegerField(min_value=0, help_text="Seats left in the slot after this attempt")


class DrawEntryAnswerSerializer(serializers.Serializer):
    slot_id = serializers.IntegerField()
    position = serializers.IntegerField(allow_null=True, help_text="Null until the draw")
    draw_at = serializers.DateTimeField(help_text="When entries close and the draw is made")
    commitment = serializers.CharField(help_text="sha256 of the draw's secret seed, published before the window")
    pseudonym = serializers.CharField(help_text="Your alias in this draw's public list")


class WarEntrySerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=["entered"])
    entry = DrawEntryAnswerSerializer()


class DrawEntrantSerializer(serializers.Serializer):
    pseudonym = serializers.CharField()
    position = serializers.IntegerField(allow_null=True)
    outcome = serializers.ChoiceField(choices=["pending", "won", "waiting", "promoted", "skipped"])


class DrawSerializer(serializers.Serializer):
    slot_id = serializers.IntegerField()
    allocation = serializers.ChoiceField(choices=["draw"])
    quota = serializers.IntegerField()
    commitment = serializers.CharField()
    entrants_hash = serializers.CharField(allow_null=True)
    seed = serializers.CharField(allow_null=True, help_text="Published only after the draw")
    entry_opens_at = serializers.DateTimeField()
    draw_at = serializers.DateTimeField()
    drawn_at = serializers.DateTimeField(allow_null=True)
    entrants_count = serializers.IntegerField()
    winners = serializers.IntegerField()
    waiting = serializers.IntegerField()
    skipped = serializers.IntegerField()
    entrants = DrawEntrantSerializer(many=True)


class CancelResultSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=["cancelled"])
    ticket = serializers.CharField(help_text="The cancelled ticket's code")
    remaining = serializers.IntegerField(allow_null=True, help_text="Seats left, or null if Redis could not tell")
