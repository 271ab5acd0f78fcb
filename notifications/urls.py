from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("connect/", views.connect, name="connect"),
    path("disconnect/", views.disconnect, name="disconnect"),
    path("webhook/", views.webhook, name="webhook"),
]
