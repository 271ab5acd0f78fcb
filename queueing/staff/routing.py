from channels.auth import AuthMiddlewareStack
from django.urls import path

from queueing.staff import consumers

# Only staff sockets read the session (who is asking); the public slot viewers carry no session wrapper,
# which cost every viewer a session lookup on connect and a check on each pushed frame.
warroom = AuthMiddlewareStack(consumers.WarRoomConsumer.as_asgi())

websocket_urlpatterns = [
    path("ws/staff/warroom/", warroom),
    path("ws/staff/warroom/<int:slot_id>/", warroom),
]
