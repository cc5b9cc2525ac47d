"""kassa's local stack: development tooling, never deployed (see docs/local-stack.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["LocalConfig", "LocalStack", "read_state"]

if TYPE_CHECKING:
    from kassa_local.stack import LocalConfig, LocalStack, read_state


def __getattr__(name: str) -> Any:  # lazy: `kassa clock …` should not import moto or localstripe
    if name in __all__:
        from kassa_local import stack

        return getattr(stack, name)
    raise AttributeError(name)
