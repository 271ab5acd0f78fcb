from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts.api import ObtainTokenView
from queueing import api

api_patterns = [
    path("war", api.WarView.as_view(), name="war"),
    path("time", api.TimeView.as_view(), name="time"),
    path("slots", api.SlotListView.as_view(), name="slots"),
    path("slots/<int:slot_id>", api.SlotDetailView.as_view(), name="slot"),
    path("tickets", api.MyTicketsView.as_view(), name="tickets"),
    path("tickets/<str:code>/cancel", api.CancelTicketView.as_view(), name="ticket-cancel"),
    path("auth/token", ObtainTokenView.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]

urlpatterns = [
    path("api/", include((api_patterns, "api"))),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("telegram/", include("notifications.urls")),
    path("staff/", include("queueing.urls_staff")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("queueing.urls")),
]
