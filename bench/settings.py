"""Production settings plus one URL: the ceiling view the benchmark compares every endpoint against.

Nothing else differs from ``wartiket.settings``, so the war endpoint is measured exactly as deployed.
"""

from wartiket.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
