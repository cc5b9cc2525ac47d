"""Customer emails: Jinja2 templates (HTML + plain text) in the customer's language, money and dates
formatted by babel. Pure rendering; the notifier adapter sends what ``render`` returns."""

from kassa.emails.render import (
    TEMPLATES,
    Branding,
    EmailTemplateError,
    RenderedEmail,
    TemplateSpec,
    available_languages,
    format_day,
    format_money,
    format_month,
    render,
    resolve_locale,
)

__all__ = [
    "TEMPLATES",
    "Branding",
    "EmailTemplateError",
    "RenderedEmail",
    "TemplateSpec",
    "available_languages",
    "format_day",
    "format_money",
    "format_month",
    "render",
    "resolve_locale",
]
