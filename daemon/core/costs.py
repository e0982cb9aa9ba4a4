"""What an action is estimated to cost to send, from the price table in the config.

X bills each API request (more for a post with a link); the other services here do not.
The estimate is shown in the approval request and stamped into the Done note.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from daemon.core.models import Action, SocialPost


class Prices(BaseModel):
    """The `[costs]` table of the config file: USD per request."""

    model_config = ConfigDict(extra="forbid")

    x_post: Decimal = Field(default=Decimal("0.01"), ge=0)
    x_post_with_link: Decimal = Field(default=Decimal("0.20"), ge=0)
    x_dm: Decimal = Field(default=Decimal("0.01"), ge=0)


def estimated_cost(action: Action, prices: Prices) -> Decimal | None:
    """Return the estimated USD cost of sending this action, or None if it costs nothing."""
    if not isinstance(action, SocialPost) or "twitter" not in action.platforms:
        return None
    if action.kind == "dm":
        return prices.x_dm
    return prices.x_post_with_link if action.link else prices.x_post
