"""The production URLs plus ``/bench/ceiling``: a bare Django view touching neither PostgreSQL nor Redis."""

import os

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from wartiket.urls import urlpatterns as production_urlpatterns

CEILING_BODY = b'{"code":"ceiling"}'


@csrf_exempt
def ceiling(request):
    # Same middleware as the war endpoint, same request; the response is about as small as a refusal.
    response = HttpResponse(CEILING_BODY, content_type="application/json")
    # Which web worker answered: the restart measurement waits for the replacement's first answer.
    response["X-Worker-Pid"] = str(os.getpid())
    return response


urlpatterns = [path("bench/ceiling", ceiling), *production_urlpatterns]
