"""The coordinator's settings: one pydantic-settings object per process.

Precedence, highest first: command-line flags (passed as init values), ``HIVEMIND_*`` environment variables,
the optional TOML config file (``--config`` or ``HIVEMIND_CONFIG``), then the defaults below.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Secrets that must never protect a production ledger (documented examples, obvious placeholders).
KNOWN_WEAK_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "dev", "development", "hivemind"}
)
MIN_SECRET_LENGTH = 32


class SettingsError(ValueError):
    """Settings that the coordinator refuses to start with; the message says what to change."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HIVEMIND_", extra="forbid")
    # Set on a subclass by load_settings(config_file=...); else HIVEMIND_CONFIG names the file.
    config_file: ClassVar[Path | None] = None

    env: Literal["development", "production"] = "development"
    host: str = Field("127.0.0.1", description="address both servers bind to (0.0.0.0 for all)")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one)")
    http_port: int = Field(5001, ge=0, le=65535, description="HTTP port (0 picks a free one)")
    data_dir: Path = Field(
        Path("hivemind-data"), description="where the SQLite file and dev secret live"
    )
    db: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in data_dir")
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    redis_url: str | None = None

    jwt_secret: SecretStr | None = None
    access_token_ttl_s: int = Field(900, gt=0)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, gt=0)

    login_max_failures_per_user: int = Field(5, gt=0)
    login_max_failures_per_address: int = Field(20, gt=0)
    login_failure_window_s: int = Field(300, gt=0)

    signup_grant_micro: int = Field(0, ge=0, description="CPT (micro) minted to each new account")

    # Jobs and scheduling
    max_input_bytes: int = Field(
        256 * 1024**2, gt=0, description="largest input file a submitter may upload"
    )
    max_output_bytes: int = Field(
        1024**3, gt=0, description="cap on what one task may write and upload"
    )
    lease_ttl_s: int = Field(
        30, gt=0, description="a lease expires when not renewed by a heartbeat for this long"
    )
    heartbeat_interval_s: int = Field(
        5, gt=0, description="how often workers are asked to heartbeat"
    )
    node_ttl_s: int = Field(60, gt=0, description="a node is offline when silent for this long")
    node_auth_cache_s: float = Field(
        5.0,
        ge=0,
        description="how long a worker's node credential is trusted before it is checked again, so how "
        "long a revoked credential keeps working on a connected worker (0: check at every call)",
    )
    max_poll_wait_s: float = Field(30.0, gt=0, description="longest long-poll a worker may ask for")
    spot_check_rate: float = Field(
        0.1, ge=0, le=1, description="share of trusted nodes' results cross-checked"
    )
    max_extra_replicas: int = Field(
        2, ge=0, description="replicas added at most when results disagree"
    )
    default_max_attempts: int = Field(3, gt=0, description="attempts per task before the job fails")
    replica_wait_s: int = Field(
        1800,
        gt=0,
        description="a task whose next replica no connected node's owner may run fails after this long",
    )

    # The price table (micro-CPT). A change applies to jobs submitted after it.
    price_cpu_micro_per_core_second: int = Field(100, ge=0)
    price_gpu_micro_per_gpu_second: int = Field(2_000, ge=0)
    price_memory_micro_per_gb_second: int = Field(10, ge=0)
    platform_fee_bps: int = Field(
        1_000, ge=0, le=10_000, description="platform fee in basis points (1000 = 10%)"
    )
    min_task_charge_micro: int = Field(1_000, ge=0)

    db_threads: int = Field(8, gt=0, description="threads running blocking database work")
    gc_young_threshold: int = Field(
        50_000,
        ge=0,
        description="a serving coordinator runs Python's cyclic garbage collector after this many "
        "new objects (0 keeps Python's default of 700); see docs/PERFORMANCE.md",
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="event loop: uvloop where installed (auto), or asyncio's own"
    )
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = getattr(settings_cls, "config_file", None) or os.environ.get(
            "HIVEMIND_CONFIG"
        )
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        if self.env == "production":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if secret.lower() in KNOWN_WEAK_SECRETS or len(secret) < MIN_SECRET_LENGTH:
                raise SettingsError(
                    "Refusing to start in production without a strong JWT secret: set "
                    f"HIVEMIND_JWT_SECRET to a random string of at least {MIN_SECRET_LENGTH} characters "
                    "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')."
                )
        return self

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'coordinator.db'}"

    def resolved_jwt_secret(self) -> str:
        """The signing secret. In development a random one is kept in ``data_dir`` (owner-only file)."""
        if self.jwt_secret is not None and self.jwt_secret.get_secret_value():
            return self.jwt_secret.get_secret_value()
        if self.env == "production":  # unreachable: the validator refuses this
            raise SettingsError("HIVEMIND_JWT_SECRET is required in production")
        path = self.data_dir / "dev-jwt-secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret)
        return secret


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the process's settings. ``overrides`` are command-line values; ``None`` means 'not given'."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**given)
    if not config_file.is_file():
        raise SettingsError(f"The config file {config_file} does not exist.")
    with_file = type("Settings", (Settings,), {"config_file": config_file, "__module__": __name__})
    settings: Settings = with_file(**given)
    return settings
