"""The ``Mailer`` port on Amazon SES (API v1 ``SendEmail``): one recipient, HTML and text bodies, UTF-8.

Errors become domain errors: what SES will never accept (``MessageRejected`` — e.g. an unverified
sender, or a recipient outside the sandbox —, an unverified MAIL FROM domain, an invalid address)
is ``InvalidInput``; throttling, paused sending, 5xx answers and network failures are
``Unavailable`` (the caller retries later). Anything else (missing permissions, bad credentials) is
raised as it is: a deployment mistake to see, not to swallow.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kassa.adapters import usage
from kassa.domain.errors import InvalidInput, Unavailable
from kassa.services.ports import OutgoingEmail

CHARSET = "UTF-8"

REJECTED = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerified",
        "MailFromDomainNotVerifiedException",
        "InvalidParameterValue",  # e.g. "Missing final '@domain'", "Illegal address"
        "InvalidParameter",
        "ConfigurationSetDoesNotExist",
    }
)
RETRYABLE = frozenset(
    {
        "Throttling",  # "Maximum sending rate exceeded", "Daily message quota exceeded"
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "AccountSendingPausedException",  # sending resumes when the account is reviewed
        "ConfigurationSetSendingPausedException",
    }
)


class SesMailer:
    def __init__(self, client: Any) -> None:
        self._ses = client

    def send(self, email: OutgoingEmail, sender: str) -> str:
        request: dict[str, Any] = {
            "Source": sender,
            "Destination": {"ToAddresses": [email.to]},
            "Message": {
                "Subject": {"Data": email.subject, "Charset": CHARSET},
                "Body": {
                    "Html": {"Data": email.html, "Charset": CHARSET},
                    "Text": {"Data": email.text, "Charset": CHARSET},
                },
            },
        }
        if email.reply_to:
            request["ReplyToAddresses"] = [email.reply_to]
        try:
            response = self._ses.send_email(**request)
        except ClientError as error:
            raise _translate(error, email) from error
        except BotoCoreError as error:  # could not connect, timed out, …
            raise Unavailable(f"SES unreachable: {error}") from error
        usage.count("ses.send_email")
        return str(response["MessageId"])


def _translate(error: ClientError, email: OutgoingEmail) -> Exception:
    details = error.response.get("Error", {})
    code = details.get("Code", "")
    message = details.get("Message", "") or str(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in RETRYABLE or status >= 500:
        return Unavailable(f"SES could not send {email.key} ({code or status}): {message}; retry")
    if code in REJECTED:
        return InvalidInput(f"SES rejected {email.key} ({code}): {message}", param="email")
    return error
