"""Pacing under Gmail's per-user quota, so the adapter never has to be refused.

Gmail counts quota units per user over a rolling minute (15,000 by
default) and refuses past it with 429 or 403 ``rateLimitExceeded``.
Backing off after a refusal wastes the time the refusal takes and, with
several requests in flight, invites a storm of them; so every call first
waits here for its units.

Two rules together:

- a token bucket refilled at the quota's rate (``units_per_minute / 60``
  a second) with a small burst, so the first screenful of a new account
  goes out at once and the rest flows at a steady pace rather than in
  one-minute lumps;
- a rolling-minute ledger of what was spent, capped a little under the
  quota (``safety``): a bucket alone may spend its burst plus a minute of
  refill within one rolling minute, which is more than the quota.

A call bigger than the bucket (a batch of 50 gets with a tiny quota) is
let through once the bucket is full, and leaves it in debt: it is never
starved.
"""

from __future__ import annotations

import collections
import threading
import time

#: the share of the minute's quota the bucket may hold: 1,500 units (300 gets) by default
BURST_SHARE = 0.1
#: the share of the quota the rolling minute may use: Google's minute and ours start at slightly
#: different instants (latency), and a body read or a send from another worker spends units too
SAFETY = 0.95
WINDOW = 60.0
_EPSILON = 1e-6  # units: refill arithmetic in floats must not leave a call waiting for 1e-17 of a unit
_MIN_SLEEP = 0.001


class PastDeadline(Exception):
    """The units are not to be had before the caller's deadline; ``args[0]``: the wait it would take."""


class QuotaPacer:
    def __init__(self, units_per_minute: int, *, burst_share: float = BURST_SHARE, safety: float = SAFETY,
                 clock=time.monotonic, sleep=time.sleep):
        if units_per_minute <= 0:
            raise ValueError("the quota must be positive")
        self.units_per_minute = units_per_minute
        self.rate = units_per_minute / WINDOW
        self.capacity = max(1.0, units_per_minute * burst_share)
        self.ceiling = units_per_minute * safety
        self._clock, self._sleep = clock, sleep
        self._tokens = self.capacity
        self._stamp = clock()
        self._spent = collections.deque()  # (when, units) within the last WINDOW seconds
        self._in_window = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, for benchmarks

    def acquire(self, units: int, deadline: float | None = None) -> float:
        """Wait until ``units`` may be spent, and spend them. Returns the seconds waited.

        ``deadline`` (on this pacer's clock, time.monotonic()): a wait that
        would end past it raises PastDeadline at once, spending nothing.
        """
        waited = 0.0
        while True:
            with self._lock:
                delay = self._try(units)
            if delay <= 0:
                self.waited += waited
                return waited
            if deadline is not None and self._clock() + delay > deadline:
                self.waited += waited
                raise PastDeadline(delay)
            self._sleep(delay)
            waited += delay

    def _try(self, units) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        while self._spent and self._spent[0][0] <= now - WINDOW:
            self._in_window -= self._spent.popleft()[1]
        needed = min(units, self.capacity)
        delays = []
        if self._tokens + _EPSILON < needed:
            delays.append(max((needed - self._tokens) / self.rate, _MIN_SLEEP))
        if self._spent and self._in_window + units > self.ceiling:
            # Wait until enough of the oldest spending leaves the minute.
            freed, release = self._in_window + units - self.ceiling, 0.0
            for when, spent in self._spent:
                freed -= spent
                release = when + WINDOW - now
                if freed <= 0:
                    break
            delays.append(max(release, _MIN_SLEEP))
        if delays:
            return max(delays)
        self._tokens -= units
        self._spent.append((now, units))
        self._in_window += units
        return 0.0


_PACERS: dict[tuple[str, str], QuotaPacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(endpoint: str, email: str, units_per_minute: int) -> QuotaPacer:
    """One pacer per mailbox per process: each cron run opens a new adapter, the quota is the user's.

    Per *process*: Odoo's cron workers and HTTP workers are separate
    processes, each with its own pacer, so the pacer keeps one process
    under the quota, not the user as a whole. The sync of a mailbox runs in
    one worker at a time (the account's sync lease), so that is the sync's
    whole spending; what another process spends meanwhile (a send, a body
    read from the web client) is what ``SAFETY`` leaves room for, and past
    that Gmail's 429 / 403 rateLimitExceeded are still met with backoff.
    """
    key = (endpoint.rstrip("/"), email.lower())
    with _PACERS_LOCK:
        pacer = _PACERS.get(key)
        if pacer is None or pacer.units_per_minute != units_per_minute:
            pacer = _PACERS[key] = QuotaPacer(units_per_minute)
        return pacer
