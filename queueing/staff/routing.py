from django.urls import path

from queueing.staff import consumers

websocket_urlpatterns = [
    path("ws/staff/warroom/", consumers.WarRoomConsumer.as_asgi()),
    path("ws/staff/warroom/<int:slot_id>/", consumers.WarRoomConsumer.as_asgi()),
]
