"""FastAPI dependencies as ``Annotated`` aliases. The app's collaborators live on ``app.state.services``,
set once by the composition root (coordinator/server.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from coordinator.accounts.ratelimit import LoginRateLimiter
from coordinator.accounts.service import Accounts
from coordinator.accounts.tokens import Principal, TokenIssuer
from coordinator.admin.jobs import JobAdmin
from coordinator.admin.nodes import NodeAdmin
from coordinator.admin.overview import Overview
from coordinator.admin.pricing import Pricing
from coordinator.admin.users import UserAdmin
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import PermissionDenied, Unauthenticated
from coordinator.jobs.blobs import BlobStore
from coordinator.metrics import Metrics
from coordinator.nodes.service import NodeRegistry
from coordinator.scheduling.service import Dispatcher
from coordinator.settings import Settings


@dataclass
class Services:
    """Everything the HTTP side needs, built once per process."""

    settings: Settings
    db: Database
    issuer: TokenIssuer
    limiter: LoginRateLimiter
    accounts: Accounts
    clock: Clock
    nodes: NodeRegistry
    dispatcher: Dispatcher
    blobs: BlobStore
    metrics: Metrics
    pricing: Pricing
    overview: Overview
    node_admin: NodeAdmin
    user_admin: UserAdmin
    job_admin: JobAdmin


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/login")


def current_user(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    token = credentials.credentials if credentials else ""
    return services.issuer.verify(token)  # raises Unauthenticated -> 401


def admin_user(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not user.is_admin:
        raise PermissionDenied(
            f"This needs an administrator account; you are signed in as '{user.username}', who is not "
            "one. Sign in as an administrator, or ask one to promote you."
        )
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]

__all__ = [
    "AdminUser",
    "ClientAddress",
    "CurrentUser",
    "Services",
    "ServicesDep",
    "Unauthenticated",
]
