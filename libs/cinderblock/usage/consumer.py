"""The billing consumer's durable name: the JetStream consumer the billing service runs
(``cinderblock.billing.run.consumer_spec``) and the name its quarantine rows carry, which
``cinderblock replay --projection billing`` rebuilds. Kept here, light (no NATS, no
aiohttp), so the CLI names the consumer without importing the service."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cinderblock.config.settings import Settings

DURABLE = "billing"


def billing_durable(settings: Settings) -> str:
    """``<subject prefix, dots as dashes>billing``: one consumer per deployment prefix."""
    return f"{settings.subject_prefix.replace('.', '-')}{DURABLE}"
