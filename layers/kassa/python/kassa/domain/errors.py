"""Domain errors. Adapters translate AWS and Stripe errors into these; handlers map them to HTTP."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error kassa raises on purpose."""

    code = "domain_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidInput(DomainError):
    code = "invalid_input"


class IdempotencyKeyReused(InvalidInput):
    """An ``Idempotency-Key`` already used with other parameters (400 ``idempotency_error``)."""

    code = "idempotency_key_in_use"


class NotFound(DomainError):
    code = "resource_missing"


class Conflict(DomainError):
    """A concurrent change won (optimistic lock or condition check failed)."""

    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class IllegalTransition(DomainError):
    code = "illegal_transition"


class CurrencyMismatch(InvalidInput):
    code = "currency_mismatch"


class Unavailable(DomainError):
    """A dependency (storage, the payment processor) failed or is overloaded; retryable."""

    code = "service_unavailable"


class PaymentProviderError(Unavailable):
    """The payment processor could not be reached or answered an unexpected error; retryable."""

    code = "payment_provider_error"


class CustomerExists(AlreadyExists):
    """A checkout gave the email of an existing customer: the merchant's back end passes customer_id."""

    code = "customer_exists"
