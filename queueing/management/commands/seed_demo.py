import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from queueing.services import demo


class Command(BaseCommand):
    help = (
        "Create demo data (idempotent): Jakarta boutiques incl. graha-dipta, slots for the next days, demo "
        "buyer and staff logins (printed), one war — graha-dipta 10:00 — opening a few minutes from now, and "
        "one draw war — setiabudi-one 13:00, the day after — taking entries now and drawn a few minutes later. "
        "`make run` runs it on every start. Refuses to run with DEBUG off unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--demo-war-in",
            type=int,
            default=120,
            metavar="SECONDS",
            help="Seconds from now until the demo war opens (default 120)",
        )
        parser.add_argument(
            "--demo-draw-in",
            type=int,
            default=180,
            metavar="SECONDS",
            help="Seconds from now until the demo draw war opens; entries close and it is drawn "
            "draw_grace_seconds (10) later (default 180)",
        )
        parser.add_argument("--force", action="store_true", help="Seed even with DEBUG off")

    def handle(self, *args, demo_war_in=120, demo_draw_in=180, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("Refusing to seed demo data with DEBUG off (use --force on a staging system).")
        summary = demo.seed(
            demo_war_in=datetime.timedelta(seconds=demo_war_in), demo_draw_in=datetime.timedelta(seconds=demo_draw_in)
        )
        slot = summary.demo_slot
        self.stdout.write(
            f"Demo war: {slot} (slot {slot.pk}) opens at "
            f"{timezone.localtime(slot.war_opens_at):%Y-%m-%d %H:%M:%S %Z}, quota {slot.quota}."
        )
        draw = summary.demo_draw
        self.stdout.write(
            f"Demo draw: {draw} (slot {draw.pk}) takes entries now, drawn at "
            f"{timezone.localtime(draw.draw_at):%Y-%m-%d %H:%M:%S %Z}; record at /draw/{draw.pk}/."
        )
        for role, email, password in summary.logins:
            self.stdout.write(f"  {role:<6} {email} / {password}")
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
