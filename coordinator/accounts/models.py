"""Tables for users and their refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

ROLE_USER = "user"
ROLE_ADMIN = "admin"


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=32, unique=True, index=True)
    email: str = Field(max_length=254)
    password_hash: str = Field(max_length=255)
    role: str = Field(default=ROLE_USER, max_length=16)
    disabled: bool = Field(default=False)
    created_at: datetime


class RefreshToken(SQLModel, table=True):
    """A single-use refresh token. Only its sha256 is stored. Tokens of one sign-in share a family:
    presenting a used token again revokes the whole family (the token was probably stolen)."""

    __tablename__ = "refresh_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    family_id: str = Field(max_length=32, index=True)
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None
