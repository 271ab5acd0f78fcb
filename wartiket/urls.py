from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.api import ChallengeView, ObtainTokenView
from queueing import api


class TicketCodeConverter:
    """A ticket code as ``new_ticket_code`` prints it: XXXX-XXXX-XXXX in Crockford base32.

    Anything else is a 404 before any view runs: a NUL byte in the code once reached PostgreSQL as a
    DataError (and was taken for an outage).
    """

    regex = api.TICKET_CODE_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TicketCodeConverter, "ticket")


api_rest = [
    path("time", api.TimeView.as_view(), name="time"),
    path("slots", api.SlotListView.as_view(), name="slots"),
    path("slots/<int:slot_id>", api.SlotDetailView.as_view(), name="slot"),
    path("slots/<int:slot_id>/draw", api.DrawView.as_view(), name="slot-draw"),
    path("tickets", api.MyTicketsView.as_view(), name="tickets"),
    path("tickets/<ticket:code>/cancel", api.CancelTicketView.as_view(), name="ticket-cancel"),
    path("auth/token", ObtainTokenView.as_view(), name="token"),
    path("challenge", ChallengeView.as_view(), name="challenge"),
    path("schema/", SpectacularAPIView.as_view(urlconf="wartiket.schema_urls"), name="schema"),
    # Swagger UI and Redoc, served from this server (drf-spectacular-sidecar's files): no CDN.
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]


def api_patterns(war_view) -> list:
    """/api/'s URLs. The schema lists them too (wartiket/schema_urls.py), with the war's description in
    place of the plain war view, which DRF's schema generator cannot describe."""
    return [
        path("war", war_view, name="war"),
        *api_rest,
    ]


urlpatterns = [
    path("api/", include((api_patterns(api.war), "api"))),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("telegram/", include("notifications.urls")),
    path("staff/", include("queueing.staff.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("queueing.urls")),
]

# JSON under /api/, the branded templates/<status>.html elsewhere (wartiket/api_errors.py).
handler400 = "wartiket.api_errors.bad_request"
handler403 = "wartiket.api_errors.permission_denied"
handler404 = "wartiket.api_errors.page_not_found"
handler500 = "wartiket.api_errors.server_error"
