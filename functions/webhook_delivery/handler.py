"""webhook_delivery: outbound webhooks (``kassa.services.outbound_webhooks``).

The ``webhook-deliveries`` queue carries the kassa bus's events (an EventBridge rule whose pattern
kassa keeps to the event types the enabled endpoints subscribe to; disabled when there are none)
and the attempts: a domain event is fanned out to the endpoints subscribed to it, each attempt is a
signed POST, a failed one is sent back to the queue with its backoff delay. Partial batch failures:
only a message whose handling raised (storage or SQS unavailable) is received again.

The ``webhook-route`` schedule: an endpoint change written whose rule put never came (the API died
in between, or the put failed) has the rule put now (``Webhooks.heal_route``; one read otherwise).
"""

import gc

gc.disable()  # the cold start: no cyclic collection while the modules load (docs/benchmarks.md)

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kassa.adapters import container

gc.freeze()  # what the imports made is kept: later collections skip it
gc.enable()

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> str:
    outcome = container.webhooks().handle(record.json_body)
    logger.info("webhook message handled", extra={"outcome": outcome, "message_id": record.message_id})
    return outcome


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    outcome = container.webhooks(with_delivery=False).heal_route()
    logger.info("webhook route checked", extra={"outcome": outcome})
    return {"outcome": outcome}
