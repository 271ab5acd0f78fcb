"""Staff page: abuse signals (``/staff/abuse/``) and the one-click switch-off of an account."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.models import User
from accounts.services import abuse
from queueing.staff.views import staff_required


@staff_required
def abuse_page(request):
    return render(
        request,
        "staff/abuse.html",
        {
            "by_ip": abuse.registrations_by_ip(),
            "entries_by_ip": abuse.entries_by_ip(),
            "phones": abuse.shared_phones(),
            "people": abuse.shared_name_and_birth_date(),
            "may_disable": request.user.has_perm("accounts.change_user"),
        },
    )


@require_POST
@staff_required
def disable_account(request, user_id: int):
    if not request.user.has_perm("accounts.change_user"):
        raise PermissionDenied
    user = get_object_or_404(User, pk=user_id)
    cancelled = abuse.disable(user, by=request.user)
    messages.success(
        request,
        _("Akun %(email)s dinonaktifkan; %(count)d tiket aktif dibatalkan.")
        % {"email": user.email, "count": len(cancelled)},
    )
    return redirect("staff:abuse")
