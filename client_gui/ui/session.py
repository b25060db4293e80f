"""The signed-in person as the app sees them: which coordinator, who, and the clients that speak for them.

The refresh token lives in the credential store (the OS keyring); access tokens only in memory. Every
method blocks on the network, so the app calls them through :class:`~client_gui.ui.background.Background`.
The session is also the worker's ``sign_in``: the engine asks it for an access token when this computer
must register, so only one party ever rotates the refresh token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from client_gui.engine.account_client import AccountClient
from client_gui.engine.coordinator_client import NotAuthenticated, UserSession
from client_gui.engine.identity import REFRESH_TOKEN, CredentialStore
from client_gui.engine.jobs_client import JobsClient

logger = logging.getLogger(__name__)
T = TypeVar("T")


class SignedOut(NotAuthenticated):
    """Nobody is signed in (or the stored session was revoked): the app must ask for the password."""


class AppSession:
    """One person at one coordinator. Thread-safe: background calls may share it."""

    def __init__(self, target: str, store: CredentialStore, *, username: str = "") -> None:
        self.target = target
        self.store = store
        self.username = username
        self.role = ""
        self._lock = threading.Lock()
        self._access = ""
        self.account = AccountClient(target)
        self.jobs = JobsClient(target)

    def close(self) -> None:
        self.account.close()
        self.jobs.close()

    # -- signing in ----------------------------------------------------------------------------

    @property
    def signed_in(self) -> bool:
        with self._lock:
            return bool(self._access)

    def register(self, username: str, email: str, password: str) -> None:
        """Create the account, then sign in to it."""
        self.account.register(username, email, password)
        self.sign_in(username, password)

    def sign_in(self, username: str, password: str) -> None:
        self._adopt(username, self.account.login(username, password))

    def resume(self) -> bool:
        """Sign in again with the stored refresh token; False when there is none or it was refused."""
        try:
            self.refresh()
        except SignedOut:
            return False
        return True

    def refresh(self) -> str:
        """A new access token from the stored refresh token (rotated and stored again)."""
        refresh = self.store.load(REFRESH_TOKEN)
        if not refresh:
            raise SignedOut("Sign in to continue.")
        try:
            session = self.account.refresh(refresh)
        except NotAuthenticated:
            self.store.delete(REFRESH_TOKEN)
            raise SignedOut("Your session has ended. Sign in again.") from None
        self._adopt(self.username, session)
        return session.token

    def sign_out(self) -> None:
        self.store.delete(REFRESH_TOKEN)
        with self._lock:
            self._access = ""
        self.account.token = ""
        self.jobs.token = ""

    def _adopt(self, username: str, session: UserSession) -> None:
        if session.refresh_token:
            self.store.save(REFRESH_TOKEN, session.refresh_token)
        with self._lock:
            self._access = session.token
            self.username = username
            self.role = session.role
        self.account.token = session.token
        self.jobs.token = session.token

    # -- calls ---------------------------------------------------------------------------------

    def access_token(self) -> str:
        """The current access token, renewed when there is none. The worker's ``sign_in``."""
        with self._lock:
            token = self._access
        return token or self.refresh()

    def call(self, fn: Callable[[], T]) -> T:
        """Run a call that needs the person's token; renew the token once if it expired meanwhile."""
        if not self.signed_in:
            self.refresh()
        try:
            return fn()
        except SignedOut:
            raise
        except NotAuthenticated:
            logger.info("access token refused; renewing the session once")
            self.refresh()
            return fn()
