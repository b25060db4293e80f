"""Where the worker keeps who it is: secrets (the node credential, the user's refresh token) in the OS
keyring, and non-secret state (coordinator address, node id) in a JSON file in the user's config folder.

A secret goes to a plain file only when the user asked for it (``--credential-file PATH``) and no OS keyring
is available; that file and any folder created for it are readable only by their owner (0600 / 0700).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import keyring.errors
from keyring.backends import chainer, fail

logger = logging.getLogger(__name__)

SERVICE = "hivemind"
NODE_CREDENTIAL = "node_credential"
REFRESH_TOKEN = "refresh_token"

MIN_OS_KEYRING_PRIORITY = 1.0
"""Keyring backends below this priority are the "not recommended" ones: keyring's fail/null backends and
keyrings.alt's file backends (a plain or password-prompting file), which must not be picked silently."""

NO_KEYRING_MESSAGE = (
    "No OS keyring is available on this computer. Install one (e.g. gnome-keyring or KWallet), "
    "or pass --credential-file PATH to store the credential in a file only you can read."
)
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
CONFIG_FILE_NAME = "worker.json"


class CredentialStoreError(Exception):
    """A secret could not be stored or read; ``str()`` is a sentence for the user."""


class NoKeyringError(CredentialStoreError):
    """No usable OS keyring, and the user did not choose a credential file."""

    def __init__(self) -> None:
        super().__init__(NO_KEYRING_MESSAGE)


class WorkerConfigError(Exception):
    """The worker's settings file could not be read or written; ``str()`` is a sentence for the user."""


class CredentialStore(ABC):
    """Named secrets for one service. ``load`` returns ``None`` for a name never saved (or deleted)."""

    @abstractmethod
    def save(self, name: str, secret: str) -> None: ...

    @abstractmethod
    def load(self, name: str) -> str | None: ...

    @abstractmethod
    def delete(self, name: str) -> None:
        """Forget ``name``; nothing happens if it is not stored."""

    @property
    @abstractmethod
    def backend_description(self) -> str:
        """Where the secrets live, for the settings page and the log."""


class KeyringCredentialStore(CredentialStore):
    """Secrets in an OS keyring (Windows Credential Manager, macOS Keychain, Secret Service, KWallet)."""

    def __init__(self, backend: keyring.backend.KeyringBackend, service: str = SERVICE) -> None:
        self._backend = backend
        self._service = service

    @property
    def backend_description(self) -> str:
        return f"OS keyring ({self._backend.name})"

    def save(self, name: str, secret: str) -> None:
        try:
            self._backend.set_password(self._service, name, secret)
        except keyring.errors.KeyringError as exc:
            logger.error("The keyring refused to store %r: %r", name, exc)
            raise CredentialStoreError(
                "The OS keyring refused to store HiveMind's credential (it may be locked). "
                "Unlock it, then try again."
            ) from exc

    def load(self, name: str) -> str | None:
        try:
            return self._backend.get_password(self._service, name)
        except keyring.errors.KeyringError as exc:
            logger.error("The keyring refused to read %r: %r", name, exc)
            raise CredentialStoreError(
                "The OS keyring refused to give HiveMind its credential (it may be locked). "
                "Unlock it, then try again."
            ) from exc

    def delete(self, name: str) -> None:
        try:
            self._backend.delete_password(self._service, name)
        except keyring.errors.PasswordDeleteError:
            pass  # not stored: already the state the caller wants
        except keyring.errors.KeyringError as exc:
            logger.error("The keyring refused to delete %r: %r", name, exc)
            raise CredentialStoreError(
                "The OS keyring refused to remove HiveMind's credential (it may be locked). "
                "Unlock it, then try again."
            ) from exc


class FileCredentialStore(CredentialStore):
    """Secrets in one JSON file that only its owner can read, at a path the user chose.

    Writes replace the file atomically, so a crash never leaves a half-written credential. On Windows the
    POSIX modes are not enforced; there Credential Manager is always available and this store is not used.
    """

    def __init__(self, path: Path, service: str = SERVICE) -> None:
        self.path = path
        self._service = service

    @property
    def backend_description(self) -> str:
        return f"file {self.path} (readable only by you)"

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            return {}
        if mode & 0o077:
            logger.warning(
                "%s was readable by others (mode %o); restricting it to you", self.path, mode
            )
            self.path.chmod(PRIVATE_FILE_MODE)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            services = data["services"]
            if not isinstance(services, dict):
                raise TypeError("services is not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("Cannot read credential file %s: %r", self.path, exc)
            raise CredentialStoreError(
                f"The credential file {self.path} is damaged or unreadable. "
                "Delete it and sign in again."
            ) from exc
        return services

    def _write(self, services: dict[str, dict[str, str]]) -> None:
        _write_private_json(self.path, {"version": 1, "services": services})

    def save(self, name: str, secret: str) -> None:
        services = self._read()
        services.setdefault(self._service, {})[name] = secret
        self._write(services)

    def load(self, name: str) -> str | None:
        return self._read().get(self._service, {}).get(name)

    def delete(self, name: str) -> None:
        services = self._read()
        if services.get(self._service, {}).pop(name, None) is not None:
            self._write(services)


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents as 0700; folders that exist are left as they are."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR_MODE)
        folder.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask


def _write_private_json(path: Path, data: Any) -> None:
    """Atomically replace ``path`` with ``data`` as JSON, mode 0600, creating its folder as 0700.

    The temporary file is created 0600 in the same folder (``mkstemp``), so the content is never readable by
    others nor written anywhere else, even for a moment.
    """
    _make_private_dirs(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(data, tmp, indent=2)
            tmp.write("\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, PRIVATE_FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def is_os_keyring(backend: keyring.backend.KeyringBackend) -> bool:
    """Whether ``backend`` is a real OS keyring (and not keyring's "fail" stand-in or a plain file)."""
    if isinstance(backend, fail.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return any(is_os_keyring(chained) for chained in backend.backends)
    try:
        return float(backend.priority) >= MIN_OS_KEYRING_PRIORITY
    except Exception:  # a backend whose priority check fails is not viable here
        return False


def open_credential_store(
    service: str = SERVICE,
    file_path: Path | None = None,
    allow_file_fallback: bool = False,
    *,
    backend: keyring.backend.KeyringBackend | None = None,
) -> CredentialStore:
    """The store for ``service``'s secrets: the OS keyring when there is one.

    Without an OS keyring, the file at ``file_path`` is used only if ``allow_file_fallback`` (the user passed
    ``--credential-file PATH``); otherwise :class:`NoKeyringError` says what to do. ``backend`` replaces
    keyring's automatic choice and is trusted as the caller's explicit pick (tests use keyrings.alt's).
    """
    explicit = backend is not None
    chosen = backend if backend is not None else keyring.get_keyring()
    if isinstance(chosen, fail.Keyring) or not (explicit or is_os_keyring(chosen)):
        logger.info("No usable OS keyring (keyring chose %s)", chosen.name)
        if not allow_file_fallback:
            raise NoKeyringError()
        if file_path is None:
            raise ValueError("allow_file_fallback needs file_path (the --credential-file PATH)")
        path = file_path.expanduser().absolute()
        logger.warning(
            "No OS keyring is available; storing the node credential in %s (readable only by you)",
            path,
        )
        return FileCredentialStore(path, service)
    return KeyringCredentialStore(chosen, service)


def default_config_dir() -> Path:
    """The user's config folder for HiveMind (platformdirs; ``~/.config/hivemind`` without it)."""
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".config" / "hivemind"
    return Path(platformdirs.user_config_dir("hivemind", appauthor=False))


@dataclass(frozen=True)
class WorkerConfig:
    """The worker's non-secret state. Secrets never go here: see :func:`open_credential_store`."""

    coordinator_address: str = ""
    node_id: str = ""
    credential_file: str = ""
    """The ``--credential-file`` the user chose, so later runs (e.g. at login) find the credential."""

    @staticmethod
    def default_path() -> Path:
        return default_config_dir() / CONFIG_FILE_NAME

    @classmethod
    def load(cls, path: Path | None = None) -> WorkerConfig:
        """The saved config, or the defaults when none was saved yet."""
        path = path or cls.default_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            logger.error("Cannot read worker config %s: %r", path, exc)
            raise WorkerConfigError(
                f"HiveMind's settings file {path} is damaged or unreadable. Delete it and connect again."
            ) from exc
        if not isinstance(data, dict):
            raise WorkerConfigError(
                f"HiveMind's settings file {path} is damaged. Delete it and connect again."
            )
        known = {f.name for f in fields(cls)}
        values = {
            key: str(value) for key, value in data.items() if key in known and value is not None
        }
        return cls(**values)

    def save(self, path: Path | None = None) -> None:
        path = path or self.default_path()
        try:
            _write_private_json(path, asdict(self))
        except OSError as exc:
            logger.error("Cannot write worker config %s: %r", path, exc)
            raise WorkerConfigError(
                f"HiveMind could not save its settings to {path}: {exc.strerror or exc}."
            ) from exc
