"""The OpenAPI schema tells the truth: schemathesis sends generated requests to the live web server and checks
every answer's status code, content type, headers and body against what the schema documents.

Limited examples per operation so the test stays well under a minute; generated both valid requests
(positive) and invalid ones (negative), authenticated with a real token of a buyer who holds a ticket.
"""

from __future__ import annotations

import datetime
import re

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ApiToken
from tests.factory import make_slot, make_user, token_client, war_body
from tests.live import web_server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 20


def test_the_schema_has_the_docs_pages_and_no_developer_notes(client):
    schema = client.get("/api/schema/?format=json").json()
    war = schema["paths"]["/api/war"]["post"]
    assert "token_attempt" not in war["description"] and "``" not in war["description"]
    assert set(war["responses"]) >= {"200", "201", "400", "401", "403", "404", "409", "413", "415", "429", "503"}
    assert "`too_early`" in war["responses"]["403"]["description"]
    assert "201" in schema["paths"]["/api/auth/token"]["post"]["responses"]
    assert "200" not in schema["paths"]["/api/auth/token"]["post"]["responses"]
    for page in ("/api/docs/", "/api/redoc/"):
        html = client.get(page).content.decode()
        assert "/api/schema/" in html
        assert "https://" not in html and "//cdn" not in html  # self-hosted files only (no CDN, no web fonts)
        assert "/static/drf_spectacular_sidecar/" in html


def run_cases(strategy, check, *, examples: int = EXAMPLES, label: str = "") -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def conforms(case):
        check(case)

    try:
        conforms()
    except Exception as exc:
        exc.add_note(label)
        raise


@pytest.mark.django_db(transaction=True)
def test_the_live_api_answers_as_its_schema_says():
    buyer, second_buyer = make_user(password="antre-dulu-2026"), make_user()
    slot = make_slot(quota_size=5)
    assert token_client(buyer).post("/api/war", war_body(slot), format="json").status_code == 201
    # A draw slot in its entry window, another day: entries (202) and its public record.
    draw = make_slot(
        quota_size=5, opens_in=60, label="11:00", date=slot.date + datetime.timedelta(days=1), allocation="draw"
    )
    headers = {"Authorization": f"Token {ApiToken.issue(buyer)}"}
    second = {"Authorization": f"Token {ApiToken.issue(second_buyer)}"}

    with web_server(workers=1, threads=4) as base:
        for page in ("/api/docs/", "/api/redoc/"):  # the pages and every script and style they load
            html = requests.get(base + page, timeout=10).text
            for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
                assert requests.get(base + asset, timeout=10).status_code == 200, asset

        schema = schemathesis.openapi.from_url(f"{base}/api/schema/?format=json")

        statuses: list[int] = []

        def validated(case, extra=headers):
            response = case.call_and_validate(base_url=base, headers=extra, checks=CHECKS, timeout=20)
            statuses.append(response.status_code)

        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 9
        for operation in operations:
            # Negative data needs something to make invalid: a body, a path or query parameter (the security
            # schemes' header and cookie are not generated).
            invalidable = bool(operation.body) or any(True for _ in (*operation.path_parameters, *operation.query))
            for mode in [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if invalidable else []):
                run_cases(operation.as_strategy(generation_mode=mode), validated, label=f"{operation.label} {mode}")

        # Random data rarely succeeds: the successful answers, checked the same way with known-good bodies.
        token = schema["/api/auth/token"]["POST"]
        credentials = {"email": buyer.email, "password": "antre-dulu-2026"}
        run_cases(token.as_strategy(body=credentials), validated, examples=2, label="token: 201")
        war = schema["/api/war"]["POST"]
        run_cases(
            war.as_strategy(body=war_body(slot)), lambda c: validated(c, second), examples=3, label="war: 201/200"
        )
        entry = war.as_strategy(body=war_body(draw, date=draw.date.isoformat()))
        run_cases(entry, lambda c: validated(c, second), examples=2, label="war: 202 entered")
        assert 202 in statuses
        record = schema["/api/slots/{slot_id}/draw"]["GET"].as_strategy(path_parameters={"slot_id": draw.pk})
        run_cases(record, validated, examples=1, label="draw: 200")
