"""Every way a war request can be refused, in one table (after pretix's CartError + error_messages).

The API maps each code to its HTTP status here and nowhere else; pages use the same messages.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

# code -> (HTTP status, message shown to buyers)
ERRORS: dict[str, tuple[int, str]] = {
    "invalid": (400, _("Permintaan tidak valid.")),
    "malformed_json": (400, _("Isi permintaan bukan JSON yang valid.")),
    "not_authenticated": (401, _("Silakan masuk terlebih dahulu.")),
    "too_early": (403, _("War belum dibuka. Tunggu hitung mundur selesai.")),
    "closed": (403, _("War untuk slot ini sudah ditutup.")),
    "nik_required": (403, _("Lengkapi NIK di profil Anda sebelum mengambil antrean.")),
    "user_mismatch": (403, _("user_id tidak sesuai dengan akun yang masuk.")),
    "bypass_invalid": (403, _("Token bypass tidak valid, kedaluwarsa, atau bukan untuk slot ini.")),
    "forbidden": (403, _("Anda tidak boleh melakukan ini.")),
    "csrf_failed": (403, _("Sesi formulir kedaluwarsa. Muat ulang halaman lalu coba lagi.")),
    # Proof of work (accounts/services/challenge.py): GET /api/challenge, solve, send it in X-Altcha.
    "challenge_required": (403, _("Selesaikan tantangan anti-bot dulu (GET /api/challenge, jawaban di X-Altcha).")),
    "challenge_invalid": (403, _("Jawaban tantangan anti-bot salah, kedaluwarsa, atau sudah dipakai.")),
    "unknown_slot": (404, _("Lokasi atau slot waktu tidak ditemukan.")),
    "not_found": (404, _("Tidak ditemukan.")),
    "method_not_allowed": (405, _("Metode tidak diizinkan.")),
    "sold_out": (409, _("Kuota habis. Semua nomor antrean untuk slot ini sudah diambil.")),
    "one_per_day": (409, _("Anda sudah memegang antrean lain pada hari yang sama.")),
    "not_cancellable": (409, _("Tiket ini tidak bisa dibatalkan lagi.")),
    # Draw mode: the entrant was not drawn for a seat; ``waitlist_position`` says their place in line.
    "not_drawn": (409, _("Anda tidak terpilih dalam undian. Anda ada di daftar tunggu.")),
    "too_large": (413, _("Isi permintaan terlalu besar.")),
    "uri_too_long": (414, _("Alamat permintaan terlalu panjang.")),
    "unsupported_media_type": (415, _("Kirim permintaan sebagai application/json.")),
    "rate_limited": (429, _("Terlalu banyak percobaan. Coba lagi sebentar lagi.")),
    # Login and token requests after too many wrong passwords (accounts/services/throttle.py); see Retry-After.
    "locked_out": (429, _("Terlalu banyak percobaan masuk yang gagal. Coba lagi setelah waktu tunggu habis.")),
    "server_error": (500, _("Terjadi kesalahan di server. Coba lagi sebentar lagi.")),
    "unavailable": (503, _("Layanan sedang sibuk. Coba lagi dalam beberapa detik.")),
    "not_ready": (503, _("War sedang disiapkan. Coba lagi dalam beberapa detik.")),
}

SUCCESS_STATUS = {"reserved": 201, "already_reserved": 200, "entered": 202}


class ReservationError(Exception):
    """A refusal with a stable machine-readable ``code``; extra fields travel in ``data``."""

    def __init__(self, code: str, *, retry_after: int | None = None, counted: bool = False, **data):
        if code not in ERRORS:
            raise ValueError(f"unknown reservation error code {code!r}")
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after
        # True when reserve.lua already counted this outcome in the war room's stats: the view must not.
        self.counted = counted
        self.data = data

    @property
    def status(self) -> int:
        return ERRORS[self.code][0]

    @property
    def message(self) -> str:
        return str(ERRORS[self.code][1])
