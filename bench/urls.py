"""The production URLs plus ``/bench/ceiling``: a bare Django view touching neither PostgreSQL nor Redis."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from wartiket.urls import urlpatterns as production_urlpatterns

CEILING_BODY = b'{"code":"ceiling"}'


@csrf_exempt
def ceiling(request):
    # Same middleware as the war endpoint, same request; the response is about as small as a refusal.
    return HttpResponse(CEILING_BODY, content_type="application/json")


urlpatterns = [path("bench/ceiling", ceiling), *production_urlpatterns]
