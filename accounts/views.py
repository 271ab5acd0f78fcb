"""Register, login, logout and profile pages."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.forms import LoginForm, ProfileForm, RegisterForm
from accounts.services import challenge, signup
from wartiket.http import safe_next


def _save_or_explain(form):
    """Save the form; a NIK or email taken by a concurrent request becomes a form error, not a 500."""
    try:
        with transaction.atomic():
            return form.save()
    except IntegrityError:
        # Two sign-ups with the same NIK or email can both pass the form check; the constraint decides.
        form.add_error(None, _("NIK atau email ini baru saja dipakai akun lain. Periksa lalu coba lagi."))
        return None


def register(request):
    if request.user.is_authenticated:
        return redirect(safe_next(request, "queueing:home"))
    form = RegisterForm(request.POST or None)
    # Proof of work and the per-address daily limit (accounts/services/signup.py), before anything is written.
    refusal = signup.gate(request, form) if request.method == "POST" else None
    if refusal is None and request.method == "POST" and form.is_valid():
        # Account and sign-in as one step: if the session store is down, the 503 keeps no account the
        # buyer would then find "already registered" on retrying.
        with transaction.atomic():
            user = _save_or_explain(form)
            if user is not None:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if user is not None:
            welcome = _("Selamat datang, %(name)s! Akun Anda siap ikut war.") % {"name": user.full_name}
            messages.success(request, welcome)
            return redirect(safe_next(request, "queueing:home"))
        signup.not_made(request)
    if refusal is not None:
        return signup.refused(
            request, "accounts/register.html", {"form": form, "next": safe_next(request, ""), "altcha": True}, refusal
        )
    return render(request, "accounts/register.html", {"form": form, "next": safe_next(request, ""), "altcha": True})


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        # The proof-of-work widget, once this account or address must show one (after recent failures).
        email = (self.request.POST.get("username") or "").strip().lower()
        return super().get_context_data(**kwargs) | {"altcha": challenge.login_needs_proof(self.request, email)}


class LogoutView(auth_views.LogoutView):
    """POST only (Django's rule): a link or an image tag cannot log anyone out."""


@login_required
def profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid() and _save_or_explain(form) is not None:
        messages.success(request, _("Profil disimpan."))
        return redirect(safe_next(request, "accounts:profile"))
    return render(
        request,
        "accounts/profile.html",
        {"form": form, "next": safe_next(request, "")},
    )
