"""OpenAPI descriptions of our authentication classes (drf-spectacular cannot guess custom ones).

The war endpoint's cached classes accept the very same token and session as the others; they get
their own scheme names only because the schema generator keys components by class.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

TOKEN = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "`Token <key>`; get a key from POST /api/auth/token",
}
SESSION = {
    "type": "apiKey",
    "in": "cookie",
    "name": "sessionid",
    "description": "Browser session; unsafe methods need the X-CSRFToken header",
}


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return TOKEN


class CachedTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.auth.CachedTokenAuthentication"
    name = "warTokenAuth"

    def get_security_definition(self, auto_schema):
        return TOKEN


class CachedSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.auth.CachedSessionAuthentication"
    name = "warSessionAuth"

    def get_security_definition(self, auto_schema):
        return SESSION
