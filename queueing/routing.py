from django.urls import path

from queueing import consumers

websocket_urlpatterns = [
    path("ws/slots/<int:slot_id>/", consumers.SlotConsumer.as_asgi()),
]
