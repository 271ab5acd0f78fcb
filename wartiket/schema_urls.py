"""The URLs the OpenAPI schema (/api/schema/) describes: /api/'s own, with ``queueing.api.WarView`` standing
for the plain view that serves POST /api/war (``queueing.api.war``). Never a ROOT_URLCONF."""

from django.urls import include, path

from queueing import api
from wartiket.urls import api_patterns

urlpatterns = [path("api/", include((api_patterns(api.WarView.as_view()), "api")))]
