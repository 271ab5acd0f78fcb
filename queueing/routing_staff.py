from django.urls import path

from queueing import consumers_staff

websocket_urlpatterns = [
    path("ws/staff/warroom/", consumers_staff.WarRoomConsumer.as_asgi()),
    path("ws/staff/warroom/<int:slot_id>/", consumers_staff.WarRoomConsumer.as_asgi()),
]
