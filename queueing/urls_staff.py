"""Staff-only pages (the war room)."""

from django.urls import path

from queueing import views_staff

app_name = "staff"

urlpatterns = [
    path("warroom/", views_staff.warroom_page, name="warroom"),
    path("warroom/<int:slot_id>/", views_staff.warroom_page, name="warroom-slot"),
]
