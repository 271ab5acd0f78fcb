"""The API's request parser (settings ``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

Its own module: DRF imports it while loading its settings, before ``wartiket.api_errors`` can be imported.
"""

from __future__ import annotations

from rest_framework import exceptions, parsers

from queueing.services.errors import ERRORS


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, except that a body nested too deep is malformed JSON (400), not a 500.

    ``json`` recurses once per nesting level: about 1,000 ``[`` exhaust Python's recursion limit, which
    DRF's parser does not expect (it turns only ``ValueError`` into a 400).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError(ERRORS["malformed_json"][1]) from exc
