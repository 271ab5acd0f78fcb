"""Staff-only pages (the war room, abuse signals)."""

from django.urls import path

from accounts import staff as accounts_staff
from queueing.staff import views

app_name = "staff"

urlpatterns = [
    path("warroom/", views.warroom_page, name="warroom"),
    path("warroom/<int:slot_id>/", views.warroom_page, name="warroom-slot"),
    path("abuse/", accounts_staff.abuse_page, name="abuse"),
    path("abuse/disable/<int:user_id>/", accounts_staff.disable_account, name="abuse-disable"),
]
