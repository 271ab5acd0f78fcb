"""Solve proofs of work in tests the way an API client would: the `altcha` library, no shortcut on our side.

The suite runs with a low difficulty (settings: WAR_POW_MAX_NUMBER / WAR_POW_COST under WAR_TESTING); the
server verifies every solution exactly as in production.
"""

from __future__ import annotations

import altcha
from rest_framework.test import APIClient


def solve(challenge_json: dict) -> str:
    """The X-Altcha value (or the form field `altcha`) for a challenge as GET /api/challenge returned it."""
    challenge = altcha.Challenge.from_dict(challenge_json)
    solution = altcha.solve_challenge(challenge, timeout=60)
    assert solution is not None, "could not solve the challenge in time"
    return altcha.Payload(challenge, solution).to_base64()


def solved_header(client: APIClient | None = None) -> str:
    """Fetch a fresh challenge from the server and solve it."""
    response = (client or APIClient()).get("/api/challenge")
    assert response.status_code == 200, response.content
    return solve(response.json())
