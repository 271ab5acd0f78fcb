"""Every WebSocket route, gathered from the apps."""

from queueing import routing
from queueing.staff import routing as staff_routing

websocket_urlpatterns = [*routing.websocket_urlpatterns, *staff_routing.websocket_urlpatterns]
