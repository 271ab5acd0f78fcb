from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.validators import validate_nik


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(_("email"), unique=True)
    full_name = models.CharField(_("nama lengkap"), max_length=150)
    phone = models.CharField(_("nomor HP"), max_length=20, blank=True)
    # NULL rather than "" for "no NIK yet", so the unique constraint only binds real numbers.
    nik = models.CharField("NIK", max_length=16, unique=True, null=True, blank=True, validators=[validate_nik])
    is_staff = models.BooleanField(_("staf"), default=False, help_text=_("Boleh masuk ke admin dan ruang pantau war."))
    is_active = models.BooleanField(_("aktif"), default=True)
    # Buyers made by `simulate_war`; `simulate_war --cleanup` removes them and their tickets.
    is_rehearsal = models.BooleanField(_("pembeli latihan"), default=False, db_index=True)
    date_joined = models.DateTimeField(_("terdaftar sejak"), default=timezone.now)
    # The client address that made the account (wartiket.http.client_ip): staff's abuse signals group by it.
    registered_ip = models.GenericIPAddressField(_("IP pendaftaran"), null=True, blank=True, db_index=True)
    # Set by a PostgreSQL trigger (migration 0005) whenever a fact the identity cache holds changes, however
    # the change is made (save, QuerySet.update, raw SQL); the cache's listener catches up from it.
    identity_changed_at = models.DateTimeField(_("identitas berubah"), null=True, editable=False, db_index=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["full_name"]

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]
        verbose_name = _("pengguna")
        verbose_name_plural = _("pengguna")

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email

    @property
    def person_key(self) -> str:
        """The person behind the account, as tickets record it (see ``queueing.models.Ticket.person``)."""
        return person_key(self.pk, self.nik)

    def save(self, *args, **kwargs):
        self.email = (self.email or "").lower()
        self.nik = self.nik or None
        super().save(*args, **kwargs)


def person_key(user_id: int, nik: str | None) -> str:
    # The NIK identifies the person (one per citizen); an account without one can only stand for itself.
    return f"nik:{nik}" if nik else f"user:{user_id}"


class NikChange(models.Model):
    """A NIK changed by staff while the account held tickets: who, why, and from what to what."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="nik_changes", verbose_name=_("akun"))
    old_nik = models.CharField(_("NIK lama"), max_length=16, blank=True)
    new_nik = models.CharField(_("NIK baru"), max_length=16, blank=True)
    reason = models.CharField(_("alasan"), max_length=255)
    changed_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("diubah oleh")
    )
    changed_at = models.DateTimeField(_("waktu"), auto_now_add=True)

    class Meta:
        ordering = ["-changed_at"]
        verbose_name = _("perubahan NIK")
        verbose_name_plural = _("perubahan NIK")

    def __str__(self) -> str:
        return f"{self.user}: {self.old_nik or '-'} → {self.new_nik or '-'}"


def hash_secret(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the API (``Authorization: Token …``). Only its SHA-256 is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("pengguna"))
    name = models.CharField(_("nama"), max_length=100, blank=True)
    key_hash = models.CharField(_("hash kunci"), max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        _("awalan"), max_length=8, editable=False, help_text=_("Karakter pertama, untuk membedakan token")
    )
    created_at = models.DateTimeField(_("dibuat"), auto_now_add=True)

    class Meta:
        verbose_name = _("token API")
        verbose_name_plural = _("token API")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def new_key() -> str:
        return "wt_" + secrets.token_urlsafe(30)

    @classmethod
    def build(cls, user: User, name: str = "") -> tuple[ApiToken, str]:
        """An unsaved token and its raw key; the key is shown once and never stored."""
        raw = cls.new_key()
        return cls(user=user, name=name, key_hash=hash_secret(raw), prefix=raw[:8]), raw

    @classmethod
    def issue(cls, user: User, name: str = "") -> str:
        token, raw = cls.build(user, name)
        token.save()
        return raw

    @classmethod
    def replace(cls, user: User, name: str = "") -> str:
        """A new token named ``name`` that takes the place of the user's token(s) of that name.

        Asking again (a script run each morning) must not pile up live tokens. The old ones are deleted, which
        drops them from the identity cache at once (``accounts.signals``).
        """
        with transaction.atomic():
            # Two requests for the same name at once: the row lock makes the second see the first's token.
            User.objects.select_for_update().filter(pk=user.pk).first()
            cls.objects.filter(user=user, name=name).delete()
            return cls.issue(user, name)
