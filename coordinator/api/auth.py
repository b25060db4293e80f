"""REST mirror of UserService: /api/v1/auth/register, /login, /refresh, /me."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from coordinator.accounts.service import TokenPair
from coordinator.api.deps import ClientAddress, CurrentUser, ServicesDep

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# Generous caps so oversized input is refused before any work; the domain gives the precise rule.
_SHORT = 1024


class RegisterBody(BaseModel):
    username: str = Field(max_length=_SHORT, examples=["ada"])
    email: str = Field(max_length=_SHORT, examples=["ada@example.org"])
    password: str = Field(max_length=_SHORT, examples=["correct horse battery"])


class RegisterOut(BaseModel):
    user_id: int
    username: str
    message: str


class LoginBody(BaseModel):
    username: str = Field(max_length=_SHORT)
    password: str = Field(max_length=_SHORT)


class RefreshBody(BaseModel):
    refresh_token: str = Field(max_length=_SHORT)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
    username: str
    role: str


class MeOut(BaseModel):
    user_id: int
    username: str
    role: str


def _token_out(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        username=pair.username,
        role=pair.role,
    )


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=RegisterOut)
def register(body: RegisterBody, services: ServicesDep) -> RegisterOut:
    user = services.accounts.register(body.username, body.email, body.password)
    return RegisterOut(
        user_id=user.id or 0,
        username=user.username,
        message=f"Welcome, {user.username}. You can sign in now.",
    )


@router.post("/login", response_model=TokenOut)
def login(body: LoginBody, services: ServicesDep, address: ClientAddress) -> TokenOut:
    return _token_out(services.accounts.login(body.username, body.password, address))


@router.post("/refresh", response_model=TokenOut)
def refresh(body: RefreshBody, services: ServicesDep) -> TokenOut:
    return _token_out(services.accounts.refresh(body.refresh_token))


@router.get("/me", response_model=MeOut)
def me(user: CurrentUser) -> MeOut:
    return MeOut(user_id=user.user_id, username=user.username, role=user.role)
