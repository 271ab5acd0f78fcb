"""Static files in production: WhiteNoise's compressed, hashed files, with ES module imports hashed too."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    # The pages load hashed module files (war.js …) that import others (server-clock.js, war-proof.js, the
    # vendored altcha library): rewrite those imports to the hashed names too, so a browser never mixes a new
    # page script with a cached old module after a deploy.
    support_js_module_import_aggregation = True
