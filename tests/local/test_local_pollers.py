"""Emulated SQS event source mappings: batches, partial failures, redrive to the DLQ, drain."""

from __future__ import annotations

import json
import threading

from local_stack_support import wait_until

from kassa_local.pollers import PauseGate, failed_ids, sqs_event
from kassa_local.stack import LocalStack


def _bodies(stack: LocalStack, queue_url: str) -> list[str]:
    sqs = stack.client("sqs")
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [m["Body"] for m in got]


def test_sqs_event_shape() -> None:
    event = sqs_event(
        [
            {
                "MessageId": "m1",
                "ReceiptHandle": "rh",
                "Body": "hi",
                "MD5OfBody": "x",
                "Attributes": {"ApproximateReceiveCount": "1"},
                "MessageAttributes": {"k": {"StringValue": "v", "DataType": "String"}},
            }
        ],
        "arn:aws:sqs:us-east-1:123456789012:jobs",
    )
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert record["messageAttributes"]["k"]["stringValue"] == "v"
    assert record["messageAttributes"]["k"]["dataType"] == "String"


def test_failed_ids() -> None:
    ids = {"a", "b"}
    assert failed_ids(None, ids) == set()
    assert failed_ids({"batchItemFailures": []}, ids) == set()
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "a"}]}, ids) == {"a"}
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, ids) == ids  # invalid → all
    assert failed_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, ids) == ids


def test_poller_deletes_successes_and_dead_letters_a_failing_message(fresh: LocalStack) -> None:
    sqs = fresh.client("sqs")
    jobs = fresh.queue_url("jobs")
    sqs.send_message_batch(
        QueueUrl=jobs,
        Entries=[
            {
                "Id": "1",
                "MessageBody": "ok-1",
                "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "t"}},
            },
            {"Id": "2", "MessageBody": "fail-always"},
            {"Id": "3", "MessageBody": "ok-2"},
        ],
    )
    worker = fresh.modules["worker"]
    # maxReceiveCount is 2 and failures come back after retry_delay_s (1 s): DLQ within seconds
    dead = wait_until(lambda: _bodies(fresh, fresh.dlq_url("jobs")), timeout=15)
    assert dead == ["fail-always"]
    seen = [body for body, _ in worker.SEEN]
    assert seen.count("ok-1") == 1 and seen.count("ok-2") == 1  # deleted after their first success
    assert seen.count("fail-always") == 2  # received maxReceiveCount times, then redriven
    first = worker.BATCHES[0]
    record = next(r for r in first if r["body"] == "ok-1")
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":jobs")
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"]["stringValue"] == "t"
    assert record["md5OfBody"]
    wait_until(lambda: fresh.consumers["worker"].backlog() == 0)
    stats = fresh.stats()["consumers"]["worker"]
    assert stats["failed"] >= 2 and stats["succeeded"] >= 2


def test_a_raising_handler_fails_the_whole_batch(fresh: LocalStack) -> None:
    sqs = fresh.client("sqs")
    with fresh.paused():  # keep both messages in one batch
        sqs.send_message_batch(
            QueueUrl=fresh.queue_url("jobs"),
            Entries=[{"Id": "1", "MessageBody": "fine"}, {"Id": "2", "MessageBody": "raise"}],
        )
        errors_before = fresh.stats()["consumers"]["worker"]["errors"]
    wait_until(lambda: sorted(_bodies(fresh, fresh.dlq_url("jobs"))) == ["fine", "raise"], timeout=15)
    assert fresh.stats()["consumers"]["worker"]["errors"] >= errors_before + 2


def test_drain_delivers_chained_messages_synchronously(fresh: LocalStack) -> None:
    sqs = fresh.client("sqs")
    with fresh.paused():
        sqs.send_message(QueueUrl=fresh.queue_url("jobs"), MessageBody=json.dumps({"chain": 1}))
        delivered = fresh.drain()
    assert delivered == 2  # jobs → worker → other → worker2
    assert [json.loads(b) for b, _ in fresh.modules["worker2"].SEEN] == [{"chained": {"chain": 1}}]


def test_pause_gate_excludes_readers_and_is_reentrant() -> None:
    gate = PauseGate()
    stop = threading.Event()
    entered = threading.Event()

    def reader() -> None:
        with gate.reading(stop) as ok:
            if ok:
                entered.set()

    with gate.exclusive(), gate.exclusive():
        t = threading.Thread(target=reader)
        t.start()
        assert not entered.wait(0.3)
    assert entered.wait(2)
    t.join()
