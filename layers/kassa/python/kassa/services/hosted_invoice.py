"""Use case: the customer pays one invoice on its hosted page (``/portal/invoices/<token>``).

The page works as the card page does (``collection.update_card``): Stripe.js confirms a SetupIntent
(a card, or a SEPA bank account under the mandate the customer accepted on the page, where the merchant
offers it: ``customers.offered_payment_method_types``), the payment method becomes the customer's
default (Stripe saves a card paid with on the hosted invoice page for the subscription's next
payments too), and the invoice is charged **on-session** — the customer is
on the page, so a bank that asks for 3-D Secure is answered there (``collection.confirm_payment``).
Unlike the card page it charges this invoice only, and it also pays an ``uncollectible`` one (written
off by the merchant, but the customer may still pay it, as on Stripe's page). A bank debit leaves the
invoice ``processing`` until the bank settles (``collection.apply_processing``).

One attempt per SetupIntent (the trigger): the ``setup_intent.succeeded`` webhook, which retries the
customer's open invoices with the same trigger, and this call claim the attempt once between them.
"""

from __future__ import annotations

from kassa.domain.errors import InvalidInput
from kassa.domain.invoice import Invoice
from kassa.services.collection import CollectResult, collect, open_payment_intent, save_confirmed_card
from kassa.services.context import BillingContext
from kassa.services.ports import MandateAcceptance, PaymentIntentInfo


def invoice_of(ctx: BillingContext, customer_id: str, invoice_id: str) -> Invoice:
    """The link's invoice, refused when it is not the link's customer's."""
    invoice = ctx.store.get_invoice(invoice_id)
    if invoice.customer != customer_id:
        raise InvalidInput("this invoice is not this customer's", param="token")
    return invoice


def pay_with_new_card(
    ctx: BillingContext,
    customer_id: str,
    invoice_id: str,
    setup_intent_id: str,
    *,
    acceptance: MandateAcceptance | None = None,
) -> CollectResult:
    """Save the card or bank account the customer confirmed (SetupIntent) as their default and charge
    the invoice with it, on-session. ``acceptance``: the browser that accepted a bank account's mandate
    (IP address, user agent), kept with the mandate. A paid or void invoice is answered as it is,
    charging nothing."""
    invoice = invoice_of(ctx, customer_id, invoice_id)
    if not invoice.collectable:
        return CollectResult(invoice, ctx.subscription_of(invoice.subscription), None)
    customer = save_confirmed_card(ctx, customer_id, setup_intent_id, acceptance=acceptance)
    invoice = ctx.store.get_invoice(invoice_id)  # fresh: the webhook may have charged it meanwhile
    return collect(ctx, invoice, customer, trigger=setup_intent_id, off_session=False)


def pending_authentication(ctx: BillingContext, invoice: Invoice) -> PaymentIntentInfo | None:
    """The invoice's PaymentIntent while it waits for 3-D Secure (what the page confirms instead of
    asking for a card); None when there is nothing to confirm."""
    return open_payment_intent(ctx, invoice)
