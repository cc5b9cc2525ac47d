"""webhook_ingest: verify the Stripe signature, record the raw event once, enqueue it, answer 2xx."""

import gc

gc.disable()  # the cold start: no cyclic collection while the modules load (docs/benchmarks.md)

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from kassa.adapters import container
from kassa.adapters.stripe_webhooks import stripe_verifier
from kassa.api.webhook import delivery, response
from kassa.services.webhooks import ingest

gc.freeze()  # what the imports made is kept: later collections skip it
gc.enable()

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    payload, signature = delivery(event)
    outcome = ingest(
        payload,
        signature,
        store=container.store(),
        queue=container.queue("webhook_queue_url"),
        secret=container.webhook_secret(),
        clock=container.clocks.current(),
        verify=stripe_verifier,
        files=container.files(),  # payloads too large for their record (webhooks/<event id>.json)
    )
    if outcome.error is not None:
        logger.info("webhook refused", extra={"code": outcome.error_code, "reason": outcome.error.message})
    return response(outcome)
