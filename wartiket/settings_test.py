"""The settings pytest runs (pytest.ini): wartiket/settings.py with WAR_TESTING on.

pytest-django loads settings before any conftest.py is read, so the switch is made here, not there.
"""

import os

os.environ.setdefault("WAR_TESTING", "1")

from wartiket.settings import *  # noqa: F403
