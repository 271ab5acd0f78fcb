"""NIK (Nomor Induk Kependudukan): the 16-digit Indonesian national ID number.

Layout: PPKKCC DDMMYY SSSS — province/regency/district code, date of birth (women add 40 to the day),
and a serial. We check what can be checked offline: length, digits, a plausible region and a real date.
"""

from __future__ import annotations

import datetime

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def nik_birth_date(nik: str) -> tuple[datetime.date, bool] | None:
    """Return (date of birth, is_female) encoded in digits 7-12, or None if they are no real date."""
    day, month, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    female = day > 40
    if female:
        day -= 40
    # Two-digit years are ambiguous: take the most recent century that puts the birth in the past.
    today = datetime.date.today()
    for century in (2000, 1900):
        try:
            born = datetime.date(century + yy, month, day)
        except ValueError:
            continue
        if born <= today:
            return born, female
    return None


def validate_nik(value: str) -> None:
    if not isinstance(value, str) or len(value) != 16:
        raise ValidationError(_("NIK harus 16 digit."), code="nik_length")
    if not value.isascii() or not value.isdigit():
        raise ValidationError(_("NIK hanya boleh berisi angka."), code="nik_digits")
    if int(value[0:2]) < 11 or int(value[0:2]) > 94:
        raise ValidationError(_("Kode provinsi pada NIK tidak dikenal."), code="nik_region")
    if nik_birth_date(value) is None:
        raise ValidationError(_("Tanggal lahir pada NIK (digit 7-12) tidak valid."), code="nik_birth_date")
    if value[12:] == "0000":
        raise ValidationError(_("Nomor urut pada NIK tidak boleh 0000."), code="nik_serial")


def make_nik(serial: int, *, region: str = "317401", birth: datetime.date | None = None, female: bool = False) -> str:
    """Build a valid NIK (demo data, rehearsal buyers, tests)."""
    birth = birth or datetime.date(1990, 1, 15)
    day = birth.day + (40 if female else 0)
    return f"{region}{day:02d}{birth.month:02d}{birth.year % 100:02d}{serial % 10000 or 1:04d}"
