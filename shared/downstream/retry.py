"""Bounded retries for downstream calls: the time budget, ``Retry-After`` parsing, the "try again" wording.

A leaf module (standard library only, imported by both the Graph helper and on-behalf-of) so that an
app which calls Graph with its own DownstreamAuth does not load the on-behalf-of machinery at start-up.
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from dataclasses import dataclass

__all__ = ["MAX_RETRY_AFTER_SECONDS", "RetryBudget", "parse_retry_after", "try_again_hint"]

# A day is beyond any budget; anything longer is clamped so arithmetic on it stays sane.
MAX_RETRY_AFTER_SECONDS = 86_400


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    # ASCII digits only (str.isdigit() also accepts "²"), and bounded: a day is beyond any budget.
    if value.isascii() and value.isdigit():
        return float(min(int(value[:9]), MAX_RETRY_AFTER_SECONDS))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER_SECONDS)
    return None


def try_again_hint(retry_after: float | None) -> str:
    """The sentence appended to a user-facing failure: `` Try again in N seconds.`` or `` Try again shortly.``"""
    return f" Try again in {int(retry_after)} seconds." if retry_after else " Try again shortly."


@dataclass(frozen=True)
class RetryBudget:
    """How long one downstream step (a token exchange, one API call) may take, retries included.

    The defaults keep a step under about 25 s: an MCP tool call that needs a token and one API call
    stays well below the 230 s Azure Functions HTTP limit even when both services are struggling.
    """

    total_seconds: float = 25.0
    attempts: int = 3
    connect_timeout: float = 4.0
    read_timeout: float = 10.0
    backoff_seconds: float = 0.5  # first back-off when the server gives no Retry-After; doubles per attempt

    def backoff(self, attempt: int) -> float:
        return self.backoff_seconds * (2 ** (attempt - 1))

    def next_delay(self, attempt: int, retry_after: float | None, deadline: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when that would not fit in the budget."""
        if attempt >= self.attempts:
            return None
        delay = retry_after if retry_after is not None else self.backoff(attempt)
        # A further attempt is worth it only if it can finish, read timeout included, before the deadline.
        if time.monotonic() + delay + self.read_timeout > deadline:
            return None
        return delay
