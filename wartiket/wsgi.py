import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")
application = get_wsgi_application()

# Load the URLconf (and the ~2 s of imports behind it) when the worker boots, not on a buyer's first request.
get_resolver().url_patterns  # noqa: B018
