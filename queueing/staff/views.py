"""Staff pages: the war room. Anonymous visitors go to the admin login; logged-in buyers get 403."""

from __future__ import annotations

import json
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from queueing.models import Slot
from queueing.services import warroom


def staff_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


@staff_required
def warroom_page(request, slot_id: int | None = None):
    slot = get_object_or_404(Slot.objects.select_related("location"), pk=slot_id) if slot_id else None
    sampler = warroom.Sampler([slot.pk] if slot else None)
    socket_path = f"/ws/staff/warroom/{slot.pk}/" if slot else "/ws/staff/warroom/"
    return render(
        request,
        "staff/warroom.html",
        {
            "slot": slot,
            "figures": sampler.sample(),
            "socket_path": socket_path,
            "outcomes": warroom.SHOWN,
            "outcomes_json": json.dumps(warroom.SHOWN),
            "today": warroom.todays_slots() if slot else None,
        },
    )
