"""API keys (several at once, rolled, restricted) and link keys (their own rotation): pure parsing and rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kassa.domain.api_keys import (
    ApiKey,
    KeyFormatError,
    add_api_key,
    api_secret_value,
    authenticate,
    parse_api_keys,
    parse_link_keys,
    roll_api_key,
    roll_link_keys,
)
from kassa.domain.links import LinkExpired, LinkRefused, sign_link, verify_link

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
OLD, NEW = "ksk_old_0123456789abcdef", "ksk_new_0123456789abcdef"


def test_the_old_secret_key_shape_is_one_full_key_without_expiry() -> None:
    (key,) = parse_api_keys({"secret_key": OLD})
    assert key == ApiKey(id="default", secret=OLD, role="full", expires_at=None)


def test_a_key_list_is_parsed_with_roles_and_expiries() -> None:
    keys = parse_api_keys(
        {
            "keys": [
                {"id": "k2", "secret": NEW, "role": "full"},
                {"id": "k1", "secret": OLD, "role": "full", "expires_at": "2026-03-02T00:00:00Z"},
                {"id": "ro", "secret": "rk_0123456789abcdef", "role": "read_only"},
            ]
        }
    )
    assert [k.id for k in keys] == ["k2", "k1", "ro"]
    assert keys[1].expires_at == datetime(2026, 3, 2, tzinfo=UTC)
    assert keys[2].role == "read_only"


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"secret_key": ""},
        {"keys": []},
        {"keys": "x"},
        {"keys": [{"id": "a", "secret": "short"}]},
        {"keys": [{"id": "a", "secret": OLD, "role": "admin"}]},
        {"keys": [{"id": "a", "secret": OLD, "expires_at": "tomorrow"}]},
        {"keys": [{"id": "a", "secret": OLD}, {"id": "a", "secret": NEW}]},
    ],
)
def test_a_malformed_secret_is_refused(value: dict) -> None:
    with pytest.raises(KeyFormatError):
        parse_api_keys(value)


def test_during_a_rotation_both_keys_authenticate_until_the_old_one_expires() -> None:
    keys = parse_api_keys(
        {"keys": [{"id": "new", "secret": NEW}, {"id": "old", "secret": OLD, "expires_at": "2026-03-02T00:00:00Z"}]}
    )
    assert authenticate(keys, NEW, NOW).id == "new"
    assert authenticate(keys, OLD, NOW).id == "old"
    assert authenticate(keys, OLD, datetime(2026, 3, 2, tzinfo=UTC)) is None  # at expires_at: gone
    assert authenticate(keys, NEW, datetime(2030, 1, 1, tzinfo=UTC)).id == "new"
    assert authenticate(keys, "ksk_other_0123456789", NOW) is None
    assert authenticate(keys, "", NOW) is None


@pytest.mark.parametrize(("method", "allowed"), [("GET", True), ("HEAD", True), ("POST", False), ("DELETE", False)])
def test_a_read_only_key_may_only_read(method: str, allowed: bool) -> None:
    assert ApiKey(id="r", secret=OLD, role="read_only").permits(method) is allowed
    assert ApiKey(id="f", secret=OLD, role="full").permits(method) is True


def test_rolling_puts_a_new_key_first_and_expires_the_old_one() -> None:
    keys = parse_api_keys({"secret_key": OLD})
    rolled, fresh = roll_api_key(keys, NOW, expires_in=timedelta(hours=24))
    assert rolled[0] is fresh and fresh.role == "full" and fresh.secret.startswith("ksk_") and fresh.expires_at is None
    assert rolled[1].secret == OLD and rolled[1].expires_at == NOW + timedelta(hours=24)
    # the secret value round-trips
    assert parse_api_keys(api_secret_value(rolled)) == rolled
    # rolling again drops nothing still valid, and never extends the old expiry
    again, newest = roll_api_key(rolled, NOW + timedelta(hours=1), expires_in=timedelta(days=7))
    assert [k.secret for k in again] == [newest.secret, fresh.secret, OLD]
    assert again[2].expires_at == NOW + timedelta(hours=24)
    # once the old one has expired it is dropped at the next roll
    later, _ = roll_api_key(again, NOW + timedelta(days=2), key_id=newest.id)
    assert OLD not in [k.secret for k in later]


def test_rolling_at_once_expires_the_old_key_now() -> None:
    rolled, fresh = roll_api_key(parse_api_keys({"secret_key": OLD}), NOW, expires_in=timedelta(0))
    assert [k.secret for k in rolled] == [fresh.secret]
    assert authenticate(rolled, OLD, NOW) is None


def test_a_restricted_key_is_rolled_as_a_restricted_key() -> None:
    keys, ro = add_api_key(parse_api_keys({"secret_key": OLD}), NOW, "read_only")
    rolled, fresh = roll_api_key(keys, NOW, key_id=ro.id)
    assert fresh.role == "read_only"
    with pytest.raises(KeyFormatError):
        roll_api_key(keys, NOW, key_id="nope")


def test_link_keys_sign_with_the_first_and_verify_with_any() -> None:
    first = {"secret_key": "klk_first_0123456789abcdef"}
    assert parse_link_keys(first) == ("klk_first_0123456789abcdef",)
    old_token, expires = sign_link(parse_link_keys(first), "cus_1", "card_update", NOW, timedelta(days=7))
    rolled = roll_link_keys(first)
    keys = parse_link_keys(rolled)
    assert keys[1] == "klk_first_0123456789abcdef" and keys[0] != keys[1]
    # a link signed with the previous key stays valid until its own expiry
    assert verify_link(keys, old_token, NOW + timedelta(days=6)).customer == "cus_1"
    with pytest.raises(LinkExpired):
        verify_link(keys, old_token, expires)
    # new links are signed with the new key: the previous key alone does not verify them
    new_token, _ = sign_link(keys, "cus_1", "card_update", NOW, timedelta(days=7))
    assert verify_link(keys[0], new_token, NOW).customer == "cus_1"
    with pytest.raises(LinkRefused):
        verify_link(keys[1], new_token, NOW)
    # a second roll drops the oldest key: its links are refused
    with pytest.raises(LinkRefused):
        verify_link(parse_link_keys(roll_link_keys(rolled)), old_token, NOW)
