"""An invoice freezes its parties when it is made: the seller from the settings (VAT number, Peppol
id, registration, bank details) and the buyer from the customer. Later changes to either show on the
next invoice only; settings refuse a bad VAT number, Peppol id or IBAN naming the field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes import make_world
from pydantic import ValidationError

from kassa.domain.customer import Address
from kassa.domain.errors import InvalidInput
from kassa.domain.settings import MerchantSettings
from kassa.services.customers import update_customer
from kassa.services.renewals import process_due


def _settings(**changes: object) -> MerchantSettings:
    base = {
        "seller_name": "Koffie BV",
        "seller_address": {"country": "NL", "line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 CJ"},
        "seller_tax_id": "NL123456782B01",
        "seller_peppol_id": "0106:12345678",
        "seller_registration": "KvK 12345678",
        "seller_iban": "NL91 ABNA 0417 1643 00",
    }
    return MerchantSettings.model_validate(base | changes)


def test_an_invoice_keeps_the_parties_it_was_issued_with() -> None:
    world = make_world()
    world.store.put_settings(_settings())
    _, price = world.catalog(unit_amount=1000)
    first = world.active_subscription(price, email="b2b@example.com")
    invoice = world.store.get_invoice(first.invoice.id)  # type: ignore[union-attr]
    assert invoice.seller is not None and invoice.buyer is not None
    assert (invoice.seller.name, invoice.seller.tax_id, invoice.seller.peppol_id) == (
        "Koffie BV",
        "NL123456782B01",
        "0106:12345678",
    )
    assert invoice.seller.iban == "NL91ABNA0417164300"  # compacted
    assert (invoice.buyer.name, invoice.buyer.email, invoice.buyer.address.country) == ("Ada", "b2b@example.com", "US")
    assert invoice.locale == "en"

    # the merchant renames itself and the customer moves: the issued invoice does not change
    world.store.put_settings(_settings(seller_name="Koffie Holding BV", seller_tax_id="NL000099998B57"))
    customer = invoice.customer
    update_customer(world.billing, customer, {"name": "Ada Lovelace", "address": Address(country="US", state="WA")})
    again = world.store.get_invoice(invoice.id)
    assert again.seller == invoice.seller and again.buyer == invoice.buyer

    # the next invoice is made with the new parties
    sub = world.store.get_subscription(first.subscription.id)
    world.clock.set(sub.current_period_end + timedelta(seconds=1))
    assert process_due(world.billing, sub.id) == "paid"
    renewal = next(i for i in world.store.list_customer_invoices(customer, 10, None).items if i.id != invoice.id)
    assert renewal.seller is not None and renewal.buyer is not None
    assert (renewal.seller.name, renewal.seller.tax_id) == ("Koffie Holding BV", "NL000099998B57")
    assert (renewal.buyer.name, renewal.buyer.address.state) == ("Ada Lovelace", "WA")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("seller_tax_id", "NL123456789B01", "seller_tax_id"),
        ("seller_peppol_id", "12345678", "Peppol id"),
        ("seller_iban", "NL91 ABNA 0417 1643 01", "IBAN"),
        ("seller_bic", "ABN", "BIC"),
    ],
)
def test_settings_refuse_bad_seller_identifiers(field: str, value: str, says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        _settings(**{field: value})
    error = raised.value.errors()[0]
    assert error["loc"] == (field,)
    assert says in error["msg"]


def test_a_customer_peppol_id_is_checked_and_can_be_removed() -> None:
    world = make_world()
    _, price = world.catalog(unit_amount=1000)
    customer = world.active_subscription(price).subscription.customer
    with pytest.raises(InvalidInput) as raised:
        update_customer(world.billing, customer, {"peppol_id": "not-an-id"})
    assert raised.value.param == "peppol_id"
    assert update_customer(world.billing, customer, {"peppol_id": "9930:DE123456789"}).peppol_id == "9930:DE123456789"
    assert update_customer(world.billing, customer, {"peppol_id": ""}).peppol_id is None
