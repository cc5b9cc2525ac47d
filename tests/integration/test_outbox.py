"""DynamoOutbox (the Outbox port on the billing table) and SesMailer (the Mailer port on SES v1),
against the shared local stack's moto: its provisioned billing table and its SES, whose default
sender (billing@example.com and example.com) the provisioning verified."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from kassa.adapters import usage
from kassa.adapters.outbox import DynamoOutbox
from kassa.adapters.ses import SesMailer
from kassa.domain.errors import InvalidInput, NotFound, Unavailable
from kassa.services.ports import OutgoingEmail
from kassa_local.stack import LocalStack

pytestmark = pytest.mark.integration

SENDER = "billing@example.com"
# a month no other test writes emails in (the stack is shared; emails are created at its virtual now)
MONTH = "2041-05"
T0 = datetime(2041, 5, 10, 12, 0, 0, 123456, tzinfo=UTC)


def email(uid: str, n: int = 1, *, customer: str | None = None, created: datetime = T0, **kw: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "key": f"in_{uid}:payment_failed:{n}",
        "template": "payment_failed",
        "to": f"ada+{uid}@example.org",
        "customer": customer if customer is not None else f"cus_{uid}",
        "locale": "nl-BE",
        "subject": f"Betaling mislukt — factuur {n} ✓",
        "html": "<p>Hallo Ada,</p>" + "<p>Uw betaling is mislukt. Werk uw kaart bij.</p>" * 60,
        "text": "Hallo Ada,\n\nUw betaling is mislukt.\n",
        "created": created,
        **kw,
    }
    return OutgoingEmail(**fields)


@pytest.fixture(scope="module")
def outbox(ddb: Any, table: str) -> DynamoOutbox:
    return DynamoOutbox(ddb, table)


@pytest.fixture(scope="module")
def ses(stack: LocalStack) -> Any:
    return stack.client("ses")


# ----------------------------------------------------------------------------- DynamoOutbox


def test_claim_once_then_the_stored_record(outbox: DynamoOutbox, uid: str) -> None:
    first = email(uid, reply_to="support@example.com")
    assert outbox.claim(first) is None

    again = outbox.claim(email(uid, subject="something else", html="<p>other</p>"))
    assert again is not None
    assert again.status == "pending"
    assert again.email == first  # the first claim's content, exactly (microseconds, reply-to, UTF-8)
    assert (again.message_id, again.sent_at, again.error) == (None, None, None)
    assert outbox.get(first.key) == again
    assert outbox.get(f"in_{uid}:nothing") is None


def test_content_is_stored_compressed(outbox: DynamoOutbox, ddb: Any, table: str, uid: str) -> None:
    mail = email(uid)
    outbox.claim(mail)
    item = ddb.get_item(TableName=table, Key={"pk": {"S": f"MAIL#{mail.key}"}, "sk": {"S": "MAIL"}})["Item"]
    assert "content_z" in item and not {"html", "text", "subject"} & set(item)
    assert len(item["content_z"]["B"]) < len(mail.html.encode()) / 4
    assert item["status"] == {"S": "pending"}
    assert item["gsi2pk"] == {"S": f"CUS#cus_{uid}"}
    assert item["gsi2sk"]["S"] == f"MAIL#2041-05-10T12:00:00.123456Z#{mail.key}"
    assert item["gsi3pk"] == {"S": f"OUTBOX#{MONTH}"}
    assert item["gsi3sk"]["S"] == f"2041-05-10T12:00:00.123456Z#{mail.key}"


def test_calls_and_write_units_are_counted(outbox: DynamoOutbox, uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # only this thread's calls: the usage counters are process-wide, and other tests' stacks may
    # still be winding down in background threads
    me = threading.get_ident()
    seen: list[tuple[str, float]] = []
    real_count, real_units = usage.count, usage.units
    monkeypatch.setattr(
        usage,
        "count",
        lambda name, n=1: (
            (seen.append((f"calls.{name}", n)) if threading.get_ident() == me else None) or real_count(name, n)
        ),
    )
    monkeypatch.setattr(
        usage,
        "units",
        lambda kind, v: (
            (seen.append((f"units.{kind}", v)) if threading.get_ident() == me else None) or real_units(kind, v)
        ),
    )
    outbox.claim(email(uid))
    assert sum(n for k, n in seen if k == "calls.dynamodb.put_item") == 1
    assert sum(n for k, n in seen if k == "units.dynamodb.write.put_item") == 1


def test_mark_sent_and_mark_failed(outbox: DynamoOutbox, uid: str) -> None:
    mail = email(uid)
    outbox.claim(mail)
    outbox.mark_failed(mail.key, "SES is throttling " + "x" * 2000)
    failed = outbox.get(mail.key)
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and failed.error.startswith("SES is throttling") and len(failed.error) == 1000
    assert outbox.claim(mail) == failed  # the service re-sends a failed one

    sent_at = T0 + timedelta(seconds=3)
    outbox.mark_sent(mail.key, "0100-msg-1", sent_at)
    sent = outbox.get(mail.key)
    assert sent is not None
    assert (sent.status, sent.message_id, sent.sent_at, sent.error) == ("sent", "0100-msg-1", sent_at, None)
    assert sent.email == mail

    outbox.mark_failed(mail.key, "a late failure of a duplicate attempt")
    assert outbox.get(mail.key) == sent  # sent stays sent: never sent twice


def test_marking_an_unknown_key(outbox: DynamoOutbox, uid: str) -> None:
    with pytest.raises(NotFound):
        outbox.mark_sent(f"missing:{uid}", "m", T0)
    with pytest.raises(NotFound):
        outbox.mark_failed(f"missing:{uid}", "boom")
    assert outbox.get(f"missing:{uid}") is None  # update_item did not create it


def test_list_customer_newest_first(outbox: DynamoOutbox, uid: str) -> None:
    customer = f"cus_{uid}"
    mails = [email(uid, n, customer=customer, created=T0 + timedelta(minutes=n)) for n in (2, 1, 3)]
    for m in mails:
        outbox.claim(m)
    outbox.claim(email(f"{uid}x", customer=f"cus_{uid}x"))  # another customer
    outbox.claim(email(f"{uid}y", customer=""))  # no customer: not in any customer listing

    listed = outbox.list_customer(customer)
    assert [r.email.key for r in listed] == [f"in_{uid}:payment_failed:{n}" for n in (3, 2, 1)]
    assert [r.email.key for r in outbox.list_customer(customer, limit=2)] == [r.email.key for r in listed[:2]]
    assert outbox.list_customer(f"cus_nobody_{uid}") == []


def test_list_month_newest_first(outbox: DynamoOutbox, uid: str) -> None:
    mails = [email(uid, n, created=datetime(2041, 5, n, 8, tzinfo=UTC)) for n in (5, 30, 1, 17)]
    mails.append(email(uid, 99, created=datetime(2041, 6, 1, tzinfo=UTC)))  # next month
    mails.append(email(uid, 98, created=datetime(2041, 4, 30, 23, 59, 59, tzinfo=UTC)))  # previous month
    for m in mails:
        outbox.claim(m)

    keys = [r.email.key for r in outbox.list_month(MONTH, limit=1000) if uid in r.email.key]
    assert keys == [f"in_{uid}:payment_failed:{n}" for n in (30, 17, 5, 1)]
    created = [r.email.created for r in outbox.list_month(MONTH, limit=1000)]
    assert created == sorted(created, reverse=True)
    assert len(outbox.list_month(MONTH, limit=2)) == 2
    assert [r.email.key for r in outbox.list_month("2041-06") if uid in r.email.key] == [f"in_{uid}:payment_failed:99"]


def test_bad_arguments(outbox: DynamoOutbox, uid: str) -> None:
    with pytest.raises(InvalidInput):
        outbox.list_month("May 2041")
    with pytest.raises(InvalidInput):
        outbox.list_customer(f"cus_{uid}", limit=0)
    with pytest.raises(InvalidInput):
        outbox.claim(email(uid, key=""))
    with pytest.raises(InvalidInput):
        outbox.claim(email(uid, key="k" * 1000))


# ----------------------------------------------------------------------------- SesMailer


def test_send_from_the_verified_sender(stack: LocalStack, ses: Any, uid: str) -> None:
    mail = email(uid, reply_to="support@example.com")
    before = usage.snapshot().get("calls.ses.send_email", 0)
    message_id = SesMailer(ses).send(mail, SENDER)
    assert message_id
    assert usage.snapshot()["calls.ses.send_email"] == before + 1

    sent = {m["id"]: m for m in stack.ses_sent_messages()}
    assert sent[message_id]["source"] == SENDER
    assert sent[message_id]["subject"] == mail.subject
    assert sent[message_id]["body"] == mail.html  # moto keeps the HTML part when there is one
    assert sent[message_id]["destinations"]["ToAddresses"] == [mail.to]


def test_a_sender_in_the_verified_domain_is_accepted(ses: Any, uid: str) -> None:
    assert SesMailer(ses).send(email(uid), "Kassa Billing <invoices@example.com>")


def test_unverified_sender_is_invalid_input(ses: Any, uid: str) -> None:
    with pytest.raises(InvalidInput, match="MessageRejected"):
        SesMailer(ses).send(email(uid), "billing@unverified.example.net")


def test_invalid_recipient_is_invalid_input(ses: Any, uid: str) -> None:
    with pytest.raises(InvalidInput):
        SesMailer(ses).send(email(uid, to="not-an-address"), SENDER)


def _stubbed(code: str, status: int) -> tuple[SesMailer, Stubber]:
    client = boto3.client("ses", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    stubber = Stubber(client)
    stubber.add_client_error("send_email", service_error_code=code, http_status_code=status)
    stubber.activate()
    return SesMailer(client), stubber


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("Throttling", 400, Unavailable),
        ("ServiceUnavailable", 503, Unavailable),
        ("InternalFailure", 500, Unavailable),
        ("AccountSendingPausedException", 400, Unavailable),
        ("MessageRejected", 400, InvalidInput),
        ("MailFromDomainNotVerifiedException", 400, InvalidInput),
        ("InvalidParameterValue", 400, InvalidInput),
    ],
)
def test_error_translation(code: str, status: int, expected: type[Exception], uid: str) -> None:
    mailer, stubber = _stubbed(code, status)
    with stubber, pytest.raises(expected):
        mailer.send(email(uid), SENDER)


def test_other_client_errors_are_raised_as_they_are(uid: str) -> None:
    mailer, stubber = _stubbed("AccessDenied", 403)
    with stubber, pytest.raises(ClientError):
        mailer.send(email(uid), SENDER)


def test_unreachable_ses_is_unavailable(uid: str) -> None:
    client = boto3.client(
        "ses",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),
    )
    with pytest.raises(Unavailable):
        SesMailer(client).send(email(uid), SENDER)
