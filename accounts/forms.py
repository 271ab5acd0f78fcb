"""Register, login and profile forms: the engine's NIK rule with messages a buyer can act on."""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.services import challenge, signup, throttle
from accounts.services import nik as nik_service
from accounts.validators import validate_nik
from queueing.services.errors import ReservationError

# Friendlier words for each refusal code of ``validate_nik``: what is wrong and where to look.
NIK_MESSAGES = {
    "nik_length": _("NIK harus tepat 16 digit (Anda mengetik %(count)s). Salin dari KTP Anda."),
    "nik_digits": _("NIK hanya berisi angka 0-9, tanpa huruf atau tanda baca."),
    "nik_region": _("Dua digit pertama NIK (kode provinsi) tidak dikenal. Periksa lagi KTP Anda."),
    "nik_birth_date": _(
        "Digit 7-12 NIK harus tanggal lahir Anda (DDMMYY; perempuan: tanggal + 40). Periksa lagi KTP Anda."
    ),
    "nik_serial": _("Empat digit terakhir NIK tidak boleh 0000."),
}
# Separators people type when copying a number from a card or a contact list.
_SEPARATORS = re.compile(r"[\s.\-()]")
# Indonesian mobile numbers: 08 followed by 8 to 11 digits (operator prefixes 81x-89x).
_MOBILE = re.compile(r"^08[1-9]\d{7,10}$")


def clean_nik_value(raw: str, *, instance: User | None = None) -> str | None:
    nik = _SEPARATORS.sub("", raw or "")
    if not nik:
        return None
    try:
        validate_nik(nik)
    except ValidationError as exc:
        message = NIK_MESSAGES.get(exc.code, exc.messages[0])
        raise ValidationError(message, code=exc.code, params={"count": len(nik)}) from exc
    others = User.objects.filter(nik=nik)
    if instance is not None and instance.pk:
        others = others.exclude(pk=instance.pk)
    if others.exists():
        raise ValidationError(_("NIK ini sudah terdaftar pada akun lain."), code="nik_taken")
    return nik


def clean_phone_value(raw: str) -> str:
    """Accept 08…, +62 8…, 62 8… with spaces or dashes; store the local form 08…"""
    phone = _SEPARATORS.sub("", raw or "")
    if phone.startswith("+62"):
        phone = "0" + phone[3:]
    elif phone.startswith("62"):
        phone = "0" + phone[2:]
    if not _MOBILE.match(phone):
        raise ValidationError(
            _("Masukkan nomor HP Indonesia, misalnya 0812 3456 7890 atau +62 812 3456 7890."), code="phone"
        )
    return phone


class BootstrapMixin:
    """Bootstrap 5 classes on every widget, and ``is-invalid`` where a bound field has errors."""

    def full_clean(self):
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                widget.attrs["class"] = widget.attrs.get("class", "") + " is-invalid"

    def _style(self):
        for field in self.fields.values():
            field.widget.attrs.setdefault("class", "form-control")


class _BuyerFields(BootstrapMixin, forms.ModelForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._style()

    nik = forms.CharField(
        label="NIK",
        max_length=24,
        required=False,
        help_text=_("16 digit sesuai KTP. Wajib untuk mengambil antrean."),
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    )
    phone = forms.CharField(
        label=_("Nomor HP"),
        max_length=24,
        help_text=_("Contoh: 0812 3456 7890"),
        widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "tel"}),
    )

    def clean_nik(self):
        return clean_nik_value(self.cleaned_data.get("nik"), instance=self.instance)

    def clean_phone(self):
        raw = self.cleaned_data.get("phone")
        if not raw and not self.fields["phone"].required:
            return ""
        return clean_phone_value(raw)


class RegisterForm(_BuyerFields):
    password1 = forms.CharField(
        label=_("Kata sandi"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("Minimal 8 karakter, bukan hanya angka, dan tidak mudah ditebak."),
    )
    password2 = forms.CharField(
        label=_("Ulangi kata sandi"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["nik"].required = True

    class Meta:
        model = User
        fields = ["email", "full_name", "nik", "phone"]
        widgets = {
            "email": forms.EmailInput(attrs={"autocomplete": "email"}),
            "full_name": forms.TextInput(attrs={"autocomplete": "name"}),
        }
        labels = {"email": _("Email"), "full_name": _("Nama lengkap")}
        help_texts = {"full_name": _("Sesuai KTP; petugas mencocokkannya saat check-in.")}

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError(_("Email ini sudah terdaftar. Silakan masuk."), code="email_taken")
        return email

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", ValidationError(_("Kedua kata sandi tidak sama."), code="password_mismatch"))
        return cleaned

    def _post_clean(self):
        super()._post_clean()
        # After the model fields are on the instance, so the similarity check sees name and email.
        password = self.cleaned_data.get("password1")
        if password:
            try:
                password_validation.validate_password(password, self.instance)
            except ValidationError as exc:
                self.add_error("password1", exc)

    def save(self, commit: bool = True) -> User:
        user = super().save(commit=False)
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user


class ProfileForm(_BuyerFields):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Accounts made by staff or the API may have neither yet; saving the name must not demand them.
        self.fields["phone"].required = False

    def clean_nik(self):
        nik = super().clean_nik()
        # Read from the database, not self.instance: the form has already put the new value on it.
        current = User.objects.filter(pk=self.instance.pk).values_list("nik", flat=True).first()
        if (current or None) != (nik or None):
            nik_service.buyer_may_change(User(pk=self.instance.pk, nik=current), nik)
        return nik

    class Meta:
        model = User
        fields = ["full_name", "phone", "nik"]
        labels = {"full_name": _("Nama lengkap")}


class LoginForm(BootstrapMixin, AuthenticationForm):
    """Login by email, whatever its capitalisation (emails are stored lower-case)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._style()

    username = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    def clean_username(self):
        return self.cleaned_data["username"].strip().lower()

    def clean(self):
        # After a few recent failures for this account or address, no password is checked without a proof of
        # work (accounts/services/challenge.py); the page then carries the widget, which solves it unseen.
        username = self.cleaned_data.get("username")
        if username and challenge.login_needs_proof(self.request, username):
            try:
                challenge.verify_request(self.request)
            except ReservationError as exc:
                raise ValidationError(signup.PROOF_MESSAGES[exc.code], code=exc.code) from None
        return super().clean()

    def get_invalid_login_error(self):
        # django-axes refused the attempt before checking the password: say so, and for how long.
        if getattr(self.request, "axes_locked_out", False):
            wait = throttle.login_retry_after(self.request, self.cleaned_data.get("username"))
            wait = wait or settings.WAR_LOGIN_LOCKOUT_SECONDS
            return ValidationError(throttle.lockout_message(wait), code="locked_out")
        return super().get_invalid_login_error()
