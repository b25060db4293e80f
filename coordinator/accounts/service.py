"""Account operations shared by gRPC and REST: register, sign in, refresh, create an admin."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from coordinator.accounts.models import ROLE_ADMIN, ROLE_USER, RefreshToken, User
from coordinator.accounts.passwords import hash_password, verify_password
from coordinator.accounts.ratelimit import LoginRateLimiter
from coordinator.accounts.tokens import Principal, TokenIssuer, hash_secret, new_secret
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from coordinator.ledger import service as ledger

USERNAME_RE = re.compile(r"[a-z0-9_-]{3,32}")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
MAX_EMAIL = 254
WRONG_CREDENTIALS = "Wrong username or password. Check both and try again."


def validate_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username or ""):
        raise InvalidArgument(
            "Choose a username of 3 to 32 characters using only lowercase letters, digits, '_' and '-'."
        )
    return username


def validate_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise InvalidArgument(f"Choose a password of at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise InvalidArgument(f"Choose a password of at most {MAX_PASSWORD} characters.")
    return password


def normalize_email(email: str) -> str:
    if not email or len(email) > MAX_EMAIL:
        raise InvalidArgument("Enter a valid email address, such as ada@example.org.")
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidArgument(f"Enter a valid email address: {exc}") from None


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user_id: int
    username: str
    role: str


class Accounts:
    """Account use cases. Collaborators are injected; every method is blocking (run it off the event loop)."""

    def __init__(
        self,
        db: Database,
        issuer: TokenIssuer,
        limiter: LoginRateLimiter,
        clock: Clock,
        *,
        refresh_ttl_s: int,
        signup_grant_micro: int = 0,
    ) -> None:
        self.db = db
        self.issuer = issuer
        self.limiter = limiter
        self.clock = clock
        self.refresh_ttl = timedelta(seconds=refresh_ttl_s)
        self.signup_grant_micro = signup_grant_micro

    def register(self, username: str, email: str, password: str, *, role: str = ROLE_USER) -> User:
        validate_username(username)
        email = normalize_email(email)
        validate_password(password)
        password_hash = hash_password(password)  # slow: outside the write transaction
        now = self.clock()
        try:
            with self.db.write() as session:
                if session.exec(select(User.id).where(User.username == username)).first():
                    raise AlreadyExists(f"The username '{username}' is taken. Choose another one.")
                user = User(
                    username=username,
                    email=email,
                    password_hash=password_hash,
                    role=role,
                    created_at=now,
                )
                session.add(user)
                session.flush()
                assert user.id is not None
                ledger.open_user_wallet(session, user.id, now=now)
                if self.signup_grant_micro > 0:
                    ledger.grant(
                        session,
                        user.id,
                        self.signup_grant_micro,
                        kind="signup_grant",
                        idempotency_key=f"signup:{user.id}",
                        memo="Welcome grant",
                        now=now,
                    )
        except IntegrityError:  # a concurrent registration of the same name won the race
            raise AlreadyExists(
                f"The username '{username}' is taken. Choose another one."
            ) from None
        return user

    def login(self, username: str, password: str, address: str) -> TokenPair:
        if not username or len(username) > 32 or not password or len(password) > MAX_PASSWORD:
            raise Unauthenticated(WRONG_CREDENTIALS)
        self.limiter.check(username, address)
        with self.db.read() as session:
            user = session.exec(select(User).where(User.username == username)).first()
        if not verify_password(user.password_hash if user else None, password) or user is None:
            self.limiter.record_failure(username, address)
            raise Unauthenticated(WRONG_CREDENTIALS)
        if user.disabled:
            raise Unauthenticated("This account is disabled. Contact the coordinator's operator.")
        self.limiter.record_success(username)
        with self.db.write() as session:
            return self._issue_pair(session, user, family_id=secrets.token_hex(16))

    def refresh(self, refresh_token: str) -> TokenPair:
        if not refresh_token or len(refresh_token) > 256:
            raise Unauthenticated("The refresh token is not valid. Sign in again.")
        now = self.clock()
        token_hash = hash_secret(refresh_token)
        with self.db.write() as session:
            row = session.exec(
                select(RefreshToken).where(RefreshToken.token_hash == token_hash)
            ).first()
            if row is None:
                raise Unauthenticated("The refresh token is not valid. Sign in again.")
            if row.used_at is not None or row.revoked_at is not None:
                # Reuse of a rotated token: someone else may hold the family. Revoke it all.
                session.execute(
                    update(RefreshToken)
                    .where(
                        col(RefreshToken.family_id) == row.family_id,
                        col(RefreshToken.revoked_at).is_(None),
                    )
                    .values(revoked_at=now)
                )
                session.commit()
                raise Unauthenticated("This refresh token was already used. Sign in again.")
            if row.expires_at <= now:
                raise Unauthenticated("Your session has expired. Sign in again.")
            user = session.get(User, row.user_id)
            if user is None or user.disabled:
                raise Unauthenticated(
                    "This account is disabled. Contact the coordinator's operator."
                )
            row.used_at = now
            session.add(row)
            return self._issue_pair(session, user, family_id=row.family_id)

    def _issue_pair(self, session: Session, user: User, family_id: str) -> TokenPair:
        assert user.id is not None
        now = self.clock()
        refresh = new_secret("hmr")
        session.add(
            RefreshToken(
                user_id=user.id,
                token_hash=hash_secret(refresh),
                family_id=family_id,
                created_at=now,
                expires_at=now + self.refresh_ttl,
            )
        )
        return TokenPair(
            access_token=self.issuer.issue(user.id, user.username, user.role),
            refresh_token=refresh,
            expires_in=self.issuer.ttl_s,
            user_id=user.id,
            username=user.username,
            role=user.role,
        )

    def create_admin(self, username: str, email: str, password: str) -> User:
        """Create an admin, or promote an existing user of that name (after checking the password)."""
        from coordinator.admin import audit  # the admin audit log sits above accounts

        with self.db.read() as session:
            existing = session.exec(select(User).where(User.username == username)).first()
        if existing is None:
            user = self.register(username, email, password, role=ROLE_ADMIN)
            summary = f"{username} was created as an administrator at the server console."
        else:
            if not verify_password(existing.password_hash, password):
                raise Unauthenticated(
                    f"User '{username}' exists and the password does not match; not promoted."
                )
            user = existing
            summary = f"{username} was made an administrator at the server console."
        # The console is an operator's admin action like any other, so it goes to the audit log: for a
        # promotion in the same transaction, for a new account right after its registration.
        with self.db.write() as session:
            row = session.get(User, user.id)
            assert row is not None and row.id is not None
            row.role = ROLE_ADMIN
            session.add(row)
            audit.record(
                session,
                Principal(user_id=row.id, username=row.username, role=ROLE_ADMIN),
                "user.promote",
                f"user:{username}",
                now=self.clock(),
                summary=summary,
                detail={"via": "hivemind coordinator create-admin"},
            )
        return row

    def get_user(self, username: str) -> User:
        with self.db.read() as session:
            user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise NotFound(f"There is no user named '{username}'.")
        return user
