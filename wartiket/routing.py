"""Every WebSocket route, gathered from the apps."""

from queueing import routing, routing_staff

websocket_urlpatterns = [*routing.websocket_urlpatterns, *routing_staff.websocket_urlpatterns]
