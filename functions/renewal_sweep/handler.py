"""renewal_sweep: on schedule, find due subscriptions through the due index and enqueue them."""

import gc

gc.disable()  # the cold start: no cyclic collection while the modules load (docs/benchmarks.md)

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from kassa.adapters import container

gc.freeze()  # what the imports made is kept: later collections skip it
gc.enable()

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    from kassa.services import renewals  # imported on first use: the cold start stays light

    env = container.env()
    queue = container.queue("renewal_queue_url")
    enqueued = renewals.sweep(container.billing(with_gateway=False), queue, env.due_shards, env.sweep_limit)
    logger.info("renewal sweep", extra={"enqueued": enqueued})
    return {"enqueued": enqueued}
