"""Proof of work on war attempts: slots whose ``challenge`` is on or hot need a solved challenge in X-Altcha.

Solutions are made the way an API client makes them (the `altcha` library, tests/pow.py); the suite lowers
the difficulty (settings), never the verification. Every refusal writes nothing.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from contextlib import contextmanager

import altcha
import pytest
import requests
from django.core.management import call_command

from accounts.models import ApiToken
from accounts.services import identity
from queueing.models import Challenge, Slot, Ticket
from queueing.services import catalog, heal
from queueing.services.store import pow_key, script, slot_keys
from tests.factory import admin_slot_form, make_slot, make_user, token_client, war_body
from tests.live import web_server
from tests.pow import solve
from tests.private_redis import PrivateRedis
from wartiket.redis_client import get_redis
from wartiket.tests.faults import point_app_at

pytestmark = pytest.mark.django_db


def set_challenge(slot: Slot, level: str) -> Slot:
    """Staff's change of the slot's level, and the war catalog rebuilt as the admin's save does after commit."""
    Slot.objects.filter(pk=slot.pk).update(challenge=level)
    catalog.rebuild()
    slot.refresh_from_db()
    return slot


def pow_slot(level: str = Challenge.ON, **kwargs) -> Slot:
    return set_challenge(make_slot(**kwargs), level)


def challenge_for(slot: Slot | None, client=None) -> dict:
    url = "/api/challenge" if slot is None else f"/api/challenge?slot={slot.pk}"
    response = (client or token_client(make_user())).get(url)
    assert response.status_code == 200, response.content
    return response.json()


def proof_for(slot: Slot | None) -> str:
    return solve(challenge_for(slot))


def attempt(client, slot: Slot, proof: str | None = None):
    headers = {} if proof is None else {"HTTP_X_ALTCHA": proof}
    return client.post("/api/war", war_body(slot), format="json", **headers)


def sold(slot: Slot) -> int:
    return int(get_redis().hget(slot_keys(slot.pk, slot.war_day).slot, "sold"))


def assert_nothing_written(slot: Slot) -> None:
    assert Ticket.objects.filter(slot=slot).count() == 0
    assert sold(slot) == 0
    assert get_redis().xlen(slot_keys(slot.pk, slot.war_day).journal) == 0


def edited(proof: str, change) -> str:
    """The same payload with ``change(dict)`` applied to its decoded JSON, re-encoded."""
    body = json.loads(base64.b64decode(proof))
    change(body)
    return base64.b64encode(json.dumps(body).encode()).decode()


# --- Refusals ---------------------------------------------------------------------------------------


def test_without_a_proof_an_attempt_on_a_challenge_slot_is_challenge_required_and_writes_nothing():
    slot = pow_slot()
    response = attempt(token_client(make_user()), slot)
    assert (response.status_code, response.json()["code"]) == (403, "challenge_required")
    assert_nothing_written(slot)


def _garbage(slot):
    return "bm90IGEgcHJvb2Y="  # base64 of "not a proof"


def _not_base64(slot):
    return "%%% not base64 %%%"


def _too_long(slot):
    return "A" * 5000


def _tampered_slot(slot):
    # The challenge says which slot it is for, under the signature: changing it breaks the signature.
    other = make_slot(label="14:00")
    return edited(proof_for(other), lambda b: b["challenge"]["parameters"]["data"].update(slot=slot.pk))


def _tampered_expiry(slot):
    return edited(proof_for(slot), lambda b: b["challenge"]["parameters"].update(expiresAt=4102444800))


def _wrong_solution(slot):
    return edited(proof_for(slot), lambda b: b["solution"].update(derivedKey="00" * 32, counter=1))


def _unsigned(slot):
    return edited(proof_for(slot), lambda b: b["challenge"].pop("signature"))


def _signed_by_someone_else(slot):
    forged = altcha.create_challenge(
        algorithm="PBKDF2/SHA-256", cost=1, counter=3, data={"level": "hot", "slot": slot.pk}, hmac_secret="not ours"
    )
    return solve(forged.to_dict())


def _expired(slot, settings):
    settings.WAR_POW_EXPIRES_SECONDS = -5
    try:
        return proof_for(slot)
    finally:
        settings.WAR_POW_EXPIRES_SECONDS = 1800


def _for_another_slot(slot):
    return proof_for(make_slot(label="14:00"))


def _signup_challenge(slot):
    # Sign-up and login challenges carry no slot: their work bought an account, not a war attempt.
    return proof_for(None)


CASES = {
    "garbage": _garbage,
    "not_base64": _not_base64,
    "too_long": _too_long,
    "tampered_slot": _tampered_slot,
    "tampered_expiry": _tampered_expiry,
    "wrong_solution": _wrong_solution,
    "unsigned": _unsigned,
    "signed_by_someone_else": _signed_by_someone_else,
    "expired": _expired,
    "for_another_slot": _for_another_slot,
    "signup_challenge": _signup_challenge,
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_proof_is_challenge_invalid_and_writes_nothing(case, settings):
    slot = pow_slot()
    make = CASES[case]
    proof = make(slot, settings) if case == "expired" else make(slot)
    response = attempt(token_client(make_user()), slot, proof)
    assert (response.status_code, response.json()["code"]) == (403, "challenge_invalid")
    assert_nothing_written(slot)
    assert not list(get_redis().scan_iter(match=pow_key(slot.war_day, "*")))  # refused before Redis


def test_an_easy_challenge_is_refused_on_a_hot_slot_and_the_hot_one_asks_more_work(settings):
    slot = pow_slot(Challenge.ON)
    easy = challenge_for(slot)
    easy_proof = solve(easy)
    set_challenge(slot, Challenge.HOT)  # staff turn it up after the page solved an "on" challenge
    buyer = token_client(make_user())
    response = attempt(buyer, slot, easy_proof)
    assert (response.status_code, response.json()["code"]) == (403, "challenge_invalid")
    assert_nothing_written(slot)

    hot = challenge_for(slot)
    assert (hot["parameters"]["data"], easy["parameters"]["data"]) == (
        {"level": "hot", "slot": slot.pk},
        {"level": "on", "slot": slot.pk},
    )
    hot_solution = altcha.solve_challenge(altcha.Challenge.from_dict(hot))
    easy_solution = altcha.solve_challenge(altcha.Challenge.from_dict(easy))
    # The answer lies in the upper half of the level's range: any hot one needs more tries than any easy one.
    assert settings.WAR_POW_HOT_MAX_NUMBER // 2 <= hot_solution.counter < settings.WAR_POW_HOT_MAX_NUMBER
    assert easy_solution.counter < settings.WAR_POW_MAX_NUMBER <= settings.WAR_POW_HOT_MAX_NUMBER // 2
    hot_proof = altcha.Payload(altcha.Challenge.from_dict(hot), hot_solution).to_base64()
    assert attempt(buyer, slot, hot_proof).status_code == 201


# --- Accepted once ----------------------------------------------------------------------------------


def test_a_correct_proof_is_accepted_once_and_its_replay_writes_nothing(django_assert_num_queries):
    slot = pow_slot(quota_size=5)
    proof = proof_for(slot)
    first = attempt(token_client(make_user()), slot, proof)
    assert first.status_code == 201, first.json()
    assert get_redis().exists(pow_key(slot.war_day, json.loads(base64.b64decode(proof))["challenge"]["signature"]))

    other = make_user()
    other_client = token_client(other)
    assert attempt(other_client, slot).json()["code"] == "challenge_required"  # (caches the identity)
    with django_assert_num_queries(0):  # refused by Redis alone, like every other refusal
        replay = attempt(other_client, slot, proof)
    assert (replay.status_code, replay.json()["code"]) == (403, "challenge_invalid")
    assert not Ticket.objects.filter(user=other).exists()
    assert sold(slot) == 1
    assert get_redis().xlen(slot_keys(slot.pk, slot.war_day).journal) == 1
    # The war room counts the replay like any refusal the script decides.
    stats = get_redis().hgetall(slot_keys(slot.pk, slot.war_day).stats)
    assert (stats["reserved"], stats["challenge_invalid"]) == ("1", "1")

    # A fresh proof gets the same buyer in: the refusal was about the proof, not the person.
    assert attempt(token_client(other), slot, proof_for(slot)).status_code == 201


def test_a_refused_attempt_spends_its_proof_too():
    slot = pow_slot(opens_in=3600)
    buyer = token_client(make_user())
    proof = proof_for(slot)
    early = attempt(buyer, slot, proof)
    assert (early.status_code, early.json()["code"]) == (403, "too_early")
    again = attempt(buyer, slot, proof)
    assert (again.status_code, again.json()["code"]) == (403, "challenge_invalid")
    assert_nothing_written(slot)


def test_an_off_slot_needs_no_proof_and_pow_disabled_turns_the_check_off(settings):
    off = make_slot()
    assert attempt(token_client(make_user()), off).status_code == 201
    on = pow_slot(label="14:00")
    settings.WAR_POW_ENABLED = False
    assert attempt(token_client(make_user()), on).status_code == 201


def test_the_challenge_endpoint_knows_war_slots_and_keeps_its_plain_form():
    make_slot()  # a war catalog to look in
    client = token_client(make_user())
    plain = client.get("/api/challenge").json()
    assert "data" not in plain["parameters"]
    missing = client.get("/api/challenge?slot=999999")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_slot")
    bad = client.get("/api/challenge?slot=abc")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid")


def test_a_war_challenge_does_not_buy_a_sign_up_or_login_too():
    from accounts.services import challenge
    from queueing.services.errors import ReservationError

    proof = proof_for(pow_slot())
    with pytest.raises(ReservationError) as refused:
        challenge.verify(proof)
    assert refused.value.code == "challenge_invalid"


def test_seed_demo_keeps_the_readme_demo_war_free_of_proofs(settings):
    settings.DEBUG = True
    call_command("seed_demo", "--demo-war-in", "90", stdout=io.StringIO())
    demo = Slot.objects.filter(location__slug="graha-dipta", time_label="10:00").order_by("date").first()
    assert demo.challenge == Challenge.OFF
    Slot.objects.filter(pk=demo.pk).update(challenge=Challenge.HOT)  # staff turned it on since
    call_command("seed_demo", stdout=io.StringIO())
    demo.refresh_from_db()
    assert demo.challenge == Challenge.OFF
    call_command("sync_quota", stdout=io.StringIO())  # on_commit does not fire inside a test transaction
    body = {"location_id": "graha-dipta", "time_slot": "10:00"}
    plain = token_client(make_user()).post("/api/war", body, format="json")
    assert plain.json()["code"] == "too_early"  # the README's curl meets the clock, not a challenge


@pytest.mark.django_db(transaction=True)
def test_staff_set_a_slots_challenge_in_the_admin_and_the_war_path_follows(client):
    slot = make_slot()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    assert 'name="challenge"' in client.get(f"/admin/queueing/slot/{slot.pk}/change/").content.decode()
    form = admin_slot_form(slot, challenge="hot")
    assert client.post(f"/admin/queueing/slot/{slot.pk}/change/", form).status_code == 302
    assert Slot.objects.get(pk=slot.pk).challenge == Challenge.HOT
    response = attempt(token_client(make_user()), slot)
    assert (response.status_code, response.json()["code"]) == (403, "challenge_required")
    assert challenge_for(slot)["parameters"]["data"]["level"] == "hot"


# --- One round trip ---------------------------------------------------------------------------------


@contextmanager
def monitored(server: PrivateRedis):
    """Every command Redis runs meanwhile (MONITOR): sent by a client, or run inside a Lua script."""
    seen: list[dict] = []
    ready = threading.Event()

    def watch():
        with server.client().monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if command["command"] == "ECHO monitor-end":
                    return
                seen.append(command)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield seen
    server.client().echo("monitor-end")
    thread.join(10)
    assert not thread.is_alive()


def name(command: str) -> str:
    """A command's name, and for EVALSHA which script (the reserve script is the attempt's decision)."""
    words = command.split()
    return " ".join(words[:2]) if words[0].upper() == "EVALSHA" else words[0].upper()


def test_the_replay_check_costs_no_extra_round_trip(settings, tmp_path):
    with PrivateRedis(tmp_path / "redis") as server:
        point_app_at(settings, server.url())
        catalog._local.clear()
        heal.mark_built()
        on = pow_slot(quota_size=5)
        off = make_slot(quota_size=5, label="14:00")

        def one_attempt(slot, proof):
            user = make_user()
            client = token_client(user)
            token = client._credentials["HTTP_AUTHORIZATION"].split()[1]
            assert identity.principal_for_token(token) is not None  # identity cached before counting
            catalog.resolve(slot.location.slug, slot.time_label)  # the catalog's one-second cache too
            with monitored(server) as seen:
                response = attempt(client, slot, proof)
            assert response.status_code == 201, response.json()
            sent = [name(c["command"]) for c in seen if c.get("client_type") != "lua"]
            in_script = [c["command"] for c in seen if c.get("client_type") == "lua"]
            return sent, in_script

        warm = attempt(token_client(make_user()), on, proof_for(on))  # loads the script (EVALSHA/EVAL)
        assert warm.status_code == 201
        proof = proof_for(on)
        signature = json.loads(base64.b64decode(proof))["challenge"]["signature"]
        confirm_sha = script("confirm").sha
        sent_on, script_on = one_attempt(on, proof)
        sent_off, _ = one_attempt(off, None)

        reserve_sha = script("reserve").sha
        assert [c for c in sent_on if c.startswith("EVALSHA")] == [f"EVALSHA {reserve_sha}", f"EVALSHA {confirm_sha}"]
        assert sent_on == sent_off  # the proof adds no command to what the attempt sends
        assert not any(command.startswith("SET") for command in sent_on)
        assert any(c.startswith("SET") and pow_key(on.war_day, signature) in c for c in script_on)


def test_the_proof_key_shares_the_war_days_cluster_slot():
    from redis.crc import key_slot

    from queueing.services.store import reserve_keys

    keys = reserve_keys(42, "2026-11-26", 7, "203.0.113.9", pow_key("2026-11-26", "ab" * 32))
    assert len(keys) == 10 and keys[8].endswith(":pow:" + "ab" * 32)
    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_with_redis_down_the_challenge_and_the_attempt_are_503_with_retry_after(settings, tmp_path):
    with PrivateRedis(tmp_path / "redis") as server:
        point_app_at(settings, server.url())
        catalog._local.clear()
        heal.mark_built()
        slot = pow_slot()
        client = token_client(make_user())
        proof = proof_for(slot)
        server.stop()
        catalog._local.clear()
        for response in (client.get(f"/api/challenge?slot={slot.pk}"), attempt(client, slot, proof)):
            assert (response.status_code, response.json()["code"]) == (503, "unavailable")
            assert int(response["Retry-After"]) >= 1
        assert not Ticket.objects.exists()


# --- Real HTTP ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_over_http_a_proof_buys_one_attempt():
    slot = make_slot(quota_size=5)
    slot.challenge = Challenge.ON
    slot.save()  # post_save rebuilds the war catalog after the commit, as an admin edit does
    tokens = [ApiToken.issue(make_user()) for _ in range(3)]
    with web_server(workers=1, threads=2) as base:

        def war(token, proof=None):
            headers = {"Authorization": f"Token {token}"} | ({"X-Altcha": proof} if proof else {})
            response = requests.post(f"{base}/api/war", json=war_body(slot), headers=headers, timeout=10)
            return response.status_code, response.json()["code"]

        # The README's way: the slot's id and level from /api/slots, its challenge, solved with the library.
        listed = requests.get(f"{base}/api/slots", timeout=10).json()
        slot_id = next(s["id"] for s in listed if s["challenge"] != "off")
        assert slot_id == slot.pk
        challenge = requests.get(f"{base}/api/challenge", params={"slot": slot_id}, timeout=10)
        assert challenge.headers["Cache-Control"] == "no-store"
        proof = solve(challenge.json())
        assert war(tokens[0]) == (403, "challenge_required")
        assert war(tokens[0], proof) == (201, "reserved")
        assert war(tokens[1], proof) == (403, "challenge_invalid")
    assert Ticket.objects.filter(slot=slot).count() == 1
