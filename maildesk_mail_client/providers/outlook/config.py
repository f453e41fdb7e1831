"""What an Outlook / Microsoft 365 mailbox needs to be reached: Graph, the authority, the app, the user's token."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com/common"


@dataclasses.dataclass(frozen=True)
class OutlookConfig:
    """One account's settings.

    ``save_refresh_token`` is called with every refresh token Azure AD
    rotates in, before the access token that came with it is used: the
    caller must make it durable at once (Odoo commits it in a transaction of
    its own), or the account is lost when the old one expires (odoo#109213).
    """

    email: str
    graph_url: str = DEFAULT_GRAPH_URL
    authority: str = DEFAULT_AUTHORITY
    client_id: str = ""
    client_secret: str = dataclasses.field(default="", repr=False)
    refresh_token: str = dataclasses.field(default="", repr=False)
    save_refresh_token: Callable[[str], None] = dataclasses.field(default=lambda token: None, repr=False)
    #: the refresh token as saved now (read afresh, outside the caller's transaction): another worker
    #: may have rotated it since this config was made, and then the one we hold is dead but the account is fine
    load_refresh_token: Callable[[], str | None] | None = dataclasses.field(default=None, repr=False)
    #: an access token kept from an earlier run, and when it expires (epoch seconds): used while it lives,
    #: so a run every few minutes does not ask Azure AD (and rotate the refresh token) every time
    access_token: str | None = dataclasses.field(default=None, repr=False)
    access_token_expires: float = 0.0
    save_access_token: Callable[[str, float], None] | None = dataclasses.field(default=None, repr=False)
    ca_file: str | None = None  # a CA bundle to trust (a test authority); None: the system's
    timeout: float = 30.0  # seconds, per HTTP exchange
    max_concurrency: int = 4  # Exchange Online serves 4 concurrent requests per mailbox and app
    max_tries: int = 6  # per request, for 429 / 5xx / network errors, before the run backs off
    backoff_base: float = 0.5  # seconds before the second try; doubled for each further one
    max_wait: float = 60.0  # a Retry-After longer than this ends the run: the cron's backoff waits instead

    def __post_init__(self):
        object.__setattr__(self, "graph_url", self.graph_url.rstrip("/"))
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
