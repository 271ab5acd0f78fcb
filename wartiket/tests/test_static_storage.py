"""Production static files: hashed names, and ES module imports pointing at hashed names too."""

from __future__ import annotations

import io
import re

from django.core.management import call_command
from django.test import override_settings


def test_collectstatic_rewrites_module_imports_to_hashed_files(tmp_path):
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "wartiket.storage.StaticFilesStorage"},
    }
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=storages):
        call_command("collectstatic", "--noinput", stdout=io.StringIO())
    [war] = [p for p in (tmp_path / "js").glob("war.*.js") if re.fullmatch(r"war\.[0-9a-f]{12}\.js", p.name)]
    imports = re.findall(r'from "([^"]+)"', war.read_text())
    assert imports, "war.js imports its modules"
    # Every import names a hashed file that exists: a cached old module can never meet a new page script.
    for name in imports:
        assert re.search(r"\.[0-9a-f]{12}\.js$", name), name
        assert (war.parent / name).resolve().exists(), name
