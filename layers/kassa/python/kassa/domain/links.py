"""Signed, expiring, single-customer links (no login): the card-update page, the authentication page,
the hosted invoice page, and the customer portal's session link and session cookie.

A token is ``<payload>.<signature>``: the payload is base64url JSON ``{"c": customer, "p": purpose,
"e": expiry (Unix seconds), "i": invoice or absent, "n": portal session id or absent, "r": the
portal's return URL or absent}``, the signature base64url HMAC-SHA256 of the
payload under a key derived from the merchant's secret. Changing one character of either part, or
using the token after its expiry, is refused; nothing else is stored. Pure functions: the caller
passes ``now`` and the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kassa.domain.errors import DomainError

PURPOSES = ("card_update", "authenticate", "invoice", "portal_session", "portal")
#: what the card page (``/portal/card``) accepts, and what the hosted invoice page
#: (``/portal/invoices/<token>``) accepts: a token of one never opens the other
CARD_PURPOSES = ("card_update", "authenticate")
INVOICE_PURPOSES = ("invoice",)
#: the portal's session link (exchanged once for the session cookie) and the session cookie itself
#: (kassa.domain.portal): neither opens the card page nor an invoice page, nor the other
PORTAL_LINK_PURPOSES = ("portal_session",)
PORTAL_COOKIE_PURPOSES = ("portal",)
_CONTEXT = b"kassa link v1"


class LinkRefused(DomainError):
    """The link was tampered with, is malformed, or has expired."""

    code = "link_invalid"


class LinkExpired(LinkRefused):
    code = "link_expired"


@dataclass(frozen=True)
class Link:
    customer: str
    purpose: str
    expires_at: datetime
    invoice: str | None = None
    session: str | None = None  # a portal session's id (its link is exchanged once)
    return_url: str | None = None  # where the portal's "return to merchant" link goes


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(
    secret: str | Sequence[str],
    customer: str,
    purpose: str,
    now: datetime,
    valid_for: timedelta,
    invoice: str | None = None,
    *,
    session: str | None = None,
    return_url: str | None = None,
) -> tuple[str, datetime]:
    """A token for ``customer`` valid for ``valid_for`` from ``now``; returns it with its expiry."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    if not isinstance(secret, str):
        secret = next(iter(secret))  # the signing key comes first
    expires = (now + valid_for).astimezone(UTC).replace(microsecond=0)
    body: dict[str, object] = {"c": customer, "p": purpose, "e": int(expires.timestamp())}
    if invoice:
        body["i"] = invoice
    if session:
        body["n"] = session
    if return_url:
        body["r"] = return_url
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    signature = _b64(hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}", expires


def verify_link(secret: str | Sequence[str], token: str, now: datetime, purposes: Sequence[str] | None = None) -> Link:
    """The link a token stands for; ``LinkRefused`` when tampered or malformed, ``LinkExpired`` after
    its expiry (checked after the signature, so an expired token reveals nothing it was not signed with).
    ``secret`` may be several link keys (the signing one and the previous one, during a rotation): a
    signature by any of them is accepted. ``purposes``: the purposes the caller's page accepts (a
    card link is refused by the invoice page and an invoice link by the card page, as ``LinkRefused``)."""
    payload, dot, signature = (token or "").partition(".")
    if not dot or not payload or not signature:
        raise LinkRefused("this link is not valid", param="token")
    candidates = (secret,) if isinstance(secret, str) else tuple(secret)
    matched = False
    for candidate in candidates:
        expected = _b64(hmac.new(_key(candidate), payload.encode(), hashlib.sha256).digest())
        matched = hmac.compare_digest(expected.encode(), signature.encode()) or matched
    if not matched:
        raise LinkRefused("this link is not valid", param="token")
    try:
        body = json.loads(_unb64(payload))
        customer, purpose, expiry = body["c"], body["p"], int(body["e"])
        invoice, session, return_url = body.get("i"), body.get("n"), body.get("r")
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise LinkRefused("this link is not valid", param="token") from error
    if not isinstance(customer, str) or purpose not in PURPOSES:
        raise LinkRefused("this link is not valid", param="token")
    if purposes is not None and purpose not in purposes:
        raise LinkRefused("this link is not valid", param="token")
    if purpose == "invoice" and not isinstance(invoice, str):
        raise LinkRefused("this link is not valid", param="token")
    if purpose in (*PORTAL_LINK_PURPOSES, *PORTAL_COOKIE_PURPOSES) and not isinstance(session, str):
        raise LinkRefused("this link is not valid", param="token")
    expires = datetime.fromtimestamp(expiry, UTC)
    if now >= expires:
        raise LinkExpired("this link has expired; use the link in the latest email", param="token")
    return Link(
        customer=customer,
        purpose=purpose,
        expires_at=expires,
        invoice=invoice if isinstance(invoice, str) else None,
        session=session if isinstance(session, str) else None,
        return_url=return_url if isinstance(return_url, str) else None,
    )


def link_url(public_url: str, purpose: str, token: str, *, confirm: bool = False) -> str:
    """Where a token is opened: the card page (``/portal/card?token=…``), the hosted invoice page
    (``/portal/invoices/<token>``, its PDF at ``…/pdf``) or the customer portal's session link
    (``/portal/session/<token>``, or ``/portal/login/<token>`` for an emailed one). The token is
    base64url text and a dot, safe in a path. One place for the emails (``kassa.services.dunning``)
    and the API."""
    base = public_url.rstrip("/")
    if purpose in INVOICE_PURPOSES:
        return f"{base}/portal/invoices/{token}"
    if purpose in PORTAL_LINK_PURPOSES:
        # ``confirm``: an emailed link opens a page whose button exchanges it (a mail scanner that
        # fetches the link does not use it up)
        return f"{base}/portal/login/{token}" if confirm else f"{base}/portal/session/{token}"
    return f"{base}/portal/card?token={token}"


def signed_url(
    secret: str | Sequence[str],
    public_url: str,
    customer: str,
    purpose: str,
    now: datetime,
    valid_for: timedelta,
    invoice: str | None = None,
) -> tuple[str, datetime]:
    """A signed link's URL and its expiry (``sign_link`` then ``link_url``). An ``invoice`` link
    names its invoice."""
    if purpose in INVOICE_PURPOSES and not invoice:
        raise ValueError("an invoice link names its invoice")
    token, expires = sign_link(secret, customer, purpose, now, valid_for, invoice)
    return link_url(public_url, purpose, token), expires
