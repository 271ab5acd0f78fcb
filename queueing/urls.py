from django.urls import path

from queueing import views

app_name = "queueing"

urlpatterns = [
    path("", views.home, name="home"),
    path("locations/<slug:slug>/", views.location, name="location"),
    path("war/", views.next_war, name="next-war"),
    path("war/<int:slot_id>/", views.war, name="war"),
    path("war/<int:slot_id>/state", views.war_state, name="war-state"),
    path("draw/<int:slot_id>/", views.draw_page, name="draw"),
    path("tickets/", views.tickets, name="tickets"),
    path("tickets/<ticket:code>/cancel", views.cancel_ticket, name="ticket-cancel"),
]
