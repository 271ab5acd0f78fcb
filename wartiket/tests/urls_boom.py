"""The site's URLs plus two views with a bug, for testing what a 500 looks like (API: JSON; pages: branded)."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from wartiket.urls import handler400, handler403, handler404, handler500  # noqa: F401 (Django reads them here)
from wartiket.urls import urlpatterns as site


class BrokenApiView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        raise ZeroDivisionError("a bug")


def broken_page(request):
    raise ZeroDivisionError("a bug")


urlpatterns = [path("api/boom", BrokenApiView.as_view()), path("boom/", broken_page), *site]
