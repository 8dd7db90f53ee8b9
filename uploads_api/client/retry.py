"""When to try a request again, and how long to wait first. No I/O here: the sync and
async clients both drive a ``RetryState`` and do their own sleeping."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import httpx

from uploads_api.client.errors import ApiError

THROTTLED = 429
MIN_THROTTLE_PAUSE = 0.1
# Answers that say "not now" rather than "never". 501 and 505 are about the request itself.
_PERMANENT_5XX = frozenset({501, 505})
# Failures after which the server cannot have stored anything: nothing reached it, or it
# said so (408 body timeout, 429 throttled, 503 "nothing was stored").
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NOTHING_STORED = frozenset({408, 429, 503})
# Our own mistakes (a bad URL, a body that broke HTTP framing): trying again cannot help.
_NOT_RETRIED = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


# Conflicts that end by themselves: 409 direct-upload-busy and idempotency-key-in-progress
# are an earlier try of ours still at work on the server (its answer lost); the next try
# finds it done.
_PASSING_CONFLICTS = frozenset({"direct-upload-busy", "idempotency-key-in-progress"})


def is_transient_status(status: int) -> bool:
    return status in (408, THROTTLED) or (status >= 500 and status not in _PERMANENT_5XX)


def is_transient_error(exc: httpx.TransportError) -> bool:
    return not isinstance(exc, _NOT_RETRIED)


def may_have_stored(failure: httpx.TransportError | ApiError) -> bool:
    """Whether a failed upload might still have been committed by the server: the
    connection broke after the body went out, or a 5xx that does not promise otherwise."""
    if isinstance(failure, ApiError):
        return failure.status not in _NOTHING_STORED
    return not isinstance(failure, _NOTHING_SENT)


def describe(failure: httpx.TransportError | ApiError) -> str:
    if isinstance(failure, ApiError):
        return f"{failure.status} {failure.code}"
    return str(failure) or type(failure).__name__


@dataclass(frozen=True)
class Retrying:
    """Told to ``on_retry`` before each pause: try ``tries`` failed, the next one starts
    after ``delay`` seconds."""

    tries: int
    delay: float
    reason: str


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), never negative."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient failures.

    ``attempts`` counts tries, the first included. A 429 does not use up attempts: the
    server asked us to slow down, not told us we failed; throttled waits are bounded by
    ``max_throttle_wait`` in total instead. A ``Retry-After`` longer than
    ``max_retry_after`` is not waited for: the error is raised.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    max_throttle_wait: float = 600.0
    jitter: bool = True

    def backoff(self, failures: int) -> float:
        """The pause after the ``failures``-th failure: base, 2 x base, 4 x base ..."""
        delay: float = min(self.max_delay, self.base_delay * 2.0 ** max(0, failures - 1))
        # Full-range jitter would allow near-zero pauses; half of it still spreads a herd.
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay

    def start(self) -> RetryState:
        return RetryState(self)


NO_RETRY = RetryPolicy(attempts=1, max_throttle_wait=0)


class RetryState:
    """One request's bookkeeping: each failure asks it for a pause, ``None`` meaning stop."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0  # throttled tries are not failures
        self.failed_tries = 0  # every try that did not succeed
        self.throttles = 0
        self.throttled_for = 0.0

    def after_status(
        self, status: int, retry_after: str | None, passing: bool = False
    ) -> float | None:
        """The pause after an answer of ``status``; ``passing``: a conflict that ends by
        itself, retried as a transient failure."""
        if not (passing or is_transient_status(status)):
            return None
        asked = parse_retry_after(retry_after)
        if asked is not None and asked > self.policy.max_retry_after:
            return None
        if status == THROTTLED:
            self.throttles += 1
            pause = asked if asked is not None else self.policy.backoff(self.throttles)
            # A floor, so "Retry-After: 0" cannot spin; and everyone throttled at once is
            # told the same number, so a little extra spreads them out.
            pause = max(pause, MIN_THROTTLE_PAUSE)
            if self.policy.jitter:
                pause *= random.uniform(1.0, 1.25)
            if self.throttled_for + pause > self.policy.max_throttle_wait:
                return None
            self.throttled_for += pause
            return pause
        self.failures += 1
        if self.failures >= self.policy.attempts:
            return None
        backoff = self.policy.backoff(self.failures)
        return max(asked, backoff) if asked is not None else backoff

    def pause_for(self, failure: httpx.TransportError | ApiError) -> float | None:
        self.failed_tries += 1
        if isinstance(failure, ApiError):
            passing = failure.code in _PASSING_CONFLICTS
            return self.after_status(failure.status, failure.headers.get("retry-after"), passing)
        return self.after_error(failure)

    def after_error(self, exc: httpx.TransportError) -> float | None:
        if not is_transient_error(exc):
            return None
        self.failures += 1
        if self.failures >= self.policy.attempts:
            return None
        return self.policy.backoff(self.failures)
