"""Access tokens (JWT, HS256, short-lived) and opaque secrets (refresh tokens, node credentials)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt

from coordinator.accounts.models import ROLE_ADMIN
from coordinator.clock import Clock
from coordinator.errors import Unauthenticated

ISSUER = "hivemind-coordinator"
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a verified access token."""

    user_id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


def new_secret(prefix: str) -> str:
    """A random bearer secret such as ``hmr_...`` (refresh) or ``hmn_...`` (node credential)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """Opaque secrets are stored only as their sha256 (they are long and random, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenIssuer:
    """Signs and verifies access tokens. Verification is pure CPU (no database)."""

    def __init__(self, secret: str, ttl_s: int, clock: Clock) -> None:
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock
        # token -> (principal, expiry): a verified signature stays verified until the token expires, so
        # a busy client does not pay for HMAC and JSON decoding on every call.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, user_id: int, username: str, role: str) -> str:
        now = self._clock()
        claims = {
            "sub": str(user_id),
            "name": username,
            "role": role,
            "iss": ISSUER,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl_s)).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > self._clock().timestamp():
            return cached[0]
        principal, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # simple bound; entries are cheap to rebuild
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        if not token:
            raise Unauthenticated(
                "Sign in first: this call needs an access token (authorization: Bearer <token>)."
            )
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss"], "verify_iat": False},
                leeway=0,
                # jwt checks exp against the wall clock; our clock is the wall clock in production.
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                "Your session has expired. Sign in again or use your refresh token."
            ) from None
        except jwt.InvalidTokenError:
            raise Unauthenticated(
                "The access token is not valid. Sign in again to get a new one."
            ) from None
        try:
            principal = Principal(
                user_id=int(claims["sub"]), username=str(claims["name"]), role=str(claims["role"])
            )
            return principal, float(claims["exp"])
        except (KeyError, ValueError):
            raise Unauthenticated(
                "The access token is not valid. Sign in again to get a new one."
            ) from None
