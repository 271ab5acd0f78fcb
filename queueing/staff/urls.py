"""Staff-only pages (the war room)."""

from django.urls import path

from queueing.staff import views

app_name = "staff"

urlpatterns = [
    path("warroom/", views.warroom_page, name="warroom"),
    path("warroom/<int:slot_id>/", views.warroom_page, name="warroom-slot"),
]
