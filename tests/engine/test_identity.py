"""Credential storage: a real (file-based, from keyrings.alt) keyring backend, the no-keyring refusal, the
owner-only file the user can opt into, and the worker's non-secret config file."""

from __future__ import annotations

import logging
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest
from keyring.backends import chainer, fail
from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

from client_gui.engine import identity
from client_gui.engine.identity import (
    NO_KEYRING_MESSAGE,
    NODE_CREDENTIAL,
    REFRESH_TOKEN,
    CredentialStoreError,
    FileCredentialStore,
    KeyringCredentialStore,
    NoKeyringError,
    WorkerConfig,
    WorkerConfigError,
    open_credential_store,
)


def no_keyring() -> keyring.backend.KeyringBackend:
    """keyring's stand-in when no backend is available (what a headless Linux box gets)."""
    return fail.Keyring()  # type: ignore[no-untyped-call]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake home (and XDG folders) so nothing a test stores lands in the real one; restores keyring's
    global backend afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    previous = keyring.get_keyring()
    yield home
    keyring.set_keyring(previous)


@pytest.fixture
def file_keyring(tmp_path: Path) -> PlaintextKeyring:
    """A real keyring backend that keeps its data in a file under tmp_path."""
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring" / "keyring_pass.cfg")
    return backend


def test_secrets_round_trip_through_a_real_keyring_backend(
    file_keyring: PlaintextKeyring, tmp_path: Path
) -> None:
    store = open_credential_store(backend=file_keyring)

    store.save(NODE_CREDENTIAL, "hmn_node-secret")
    store.save(REFRESH_TOKEN, "refresh-secret")

    assert isinstance(store, KeyringCredentialStore)
    assert "Plaintext" in store.backend_description
    # A fresh backend reading the same keyring sees what was stored: it really went to the keyring.
    reopened = PlaintextKeyring()
    reopened.file_path = file_keyring.file_path
    assert reopened.get_password("hivemind", NODE_CREDENTIAL) == "hmn_node-secret"
    assert open_credential_store(backend=reopened).load(REFRESH_TOKEN) == "refresh-secret"

    store.delete(NODE_CREDENTIAL)
    store.delete(NODE_CREDENTIAL)  # deleting what is not there is fine
    assert store.load(NODE_CREDENTIAL) is None
    assert store.load(REFRESH_TOKEN) == "refresh-secret"


def test_services_keep_separate_secrets(file_keyring: PlaintextKeyring) -> None:
    open_credential_store("hivemind", backend=file_keyring).save(NODE_CREDENTIAL, "a")
    open_credential_store("hivemind-staging", backend=file_keyring).save(NODE_CREDENTIAL, "b")

    assert open_credential_store("hivemind", backend=file_keyring).load(NODE_CREDENTIAL) == "a"


def test_a_usable_keyring_wins_over_the_credential_file(
    file_keyring: PlaintextKeyring, tmp_path: Path
) -> None:
    chosen = tmp_path / "creds" / "node.json"

    store = open_credential_store(file_path=chosen, allow_file_fallback=True, backend=file_keyring)
    store.save(NODE_CREDENTIAL, "secret")

    assert isinstance(store, KeyringCredentialStore)
    assert not chosen.exists()


def test_without_a_keyring_it_refuses_unless_the_user_chose_a_file() -> None:
    keyring.set_keyring(no_keyring())

    with pytest.raises(NoKeyringError) as raised:
        open_credential_store()

    assert str(raised.value) == (
        "No OS keyring is available on this computer. Install one (e.g. gnome-keyring or KWallet), "
        "or pass --credential-file PATH to store the credential in a file only you can read."
    )
    assert str(raised.value) == NO_KEYRING_MESSAGE


def test_an_automatically_chosen_plain_file_keyring_is_not_trusted(
    file_keyring: PlaintextKeyring,
) -> None:
    # keyrings.alt's plaintext file is what keyring picks on a headless box when keyrings.alt is
    # installed; it is a plain file, so the user must opt in with --credential-file instead.
    keyring.set_keyring(file_keyring)

    with pytest.raises(NoKeyringError):
        open_credential_store()


def test_a_chainer_with_no_backends_is_no_keyring() -> None:
    class EmptyChainer(chainer.ChainerBackend):
        backends: list[keyring.backend.KeyringBackend] = []  # noqa: RUF012

    empty = EmptyChainer()  # type: ignore[no-untyped-call]
    assert not identity.is_os_keyring(empty)
    keyring.set_keyring(empty)
    with pytest.raises(NoKeyringError):
        open_credential_store()


def test_with_opt_in_the_secret_goes_to_an_owner_only_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyring.set_keyring(no_keyring())
    chosen = tmp_path / "chosen" / "node.json"

    with caplog.at_level(logging.WARNING, logger="client_gui.engine.identity"):
        store = open_credential_store(file_path=chosen, allow_file_fallback=True)
    store.save(NODE_CREDENTIAL, "hmn_file-secret")

    assert isinstance(store, FileCredentialStore)
    assert (
        f"No OS keyring is available; storing the node credential in {chosen} (readable only by you)"
        in caplog.text
    )
    assert store.backend_description == f"file {chosen} (readable only by you)"
    assert mode(chosen) == 0o600
    assert mode(chosen.parent) == 0o700
    assert [p.name for p in chosen.parent.iterdir()] == ["node.json"]  # no temporary left behind
    reopened = open_credential_store(file_path=chosen, allow_file_fallback=True)
    assert reopened.load(NODE_CREDENTIAL) == "hmn_file-secret"
    assert reopened.load(REFRESH_TOKEN) is None

    reopened.delete(NODE_CREDENTIAL)
    assert store.load(NODE_CREDENTIAL) is None
    assert mode(chosen) == 0o600


def test_the_file_fallback_writes_the_secret_nowhere_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyring.set_keyring(no_keyring())
    chosen = tmp_path / "chosen" / "deep" / "node.json"
    secret = secrets.token_urlsafe(32)
    config = WorkerConfig(coordinator_address="grpc.example:50051", node_id="n-1")

    with caplog.at_level(logging.DEBUG):
        store = open_credential_store(file_path=chosen, allow_file_fallback=True)
        store.save(NODE_CREDENTIAL, secret)
        store.save(REFRESH_TOKEN, "other")
        config.save()
        assert store.load(NODE_CREDENTIAL) == secret

    holders = [
        path
        for path in tmp_path.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert holders == [chosen]
    assert secret not in caplog.text
    assert mode(chosen.parent) == mode(chosen.parent.parent) == 0o700


def test_a_credential_file_others_could_read_is_restricted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = tmp_path / "node.json"
    store = FileCredentialStore(chosen)
    store.save(NODE_CREDENTIAL, "s")
    chosen.chmod(0o644)

    with caplog.at_level(logging.WARNING):
        assert store.load(NODE_CREDENTIAL) == "s"

    assert mode(chosen) == 0o600
    assert "readable by others" in caplog.text


def test_a_damaged_credential_file_is_a_sentence(tmp_path: Path) -> None:
    chosen = tmp_path / "node.json"
    chosen.write_text("{not json")

    with pytest.raises(CredentialStoreError, match=r"is damaged or unreadable\. Delete it"):
        FileCredentialStore(chosen).load(NODE_CREDENTIAL)


def test_opting_in_without_a_path_is_a_programming_error() -> None:
    keyring.set_keyring(no_keyring())

    with pytest.raises(ValueError, match="file_path"):
        open_credential_store(allow_file_fallback=True)


def test_worker_config_defaults_when_nothing_was_saved(isolated_home: Path) -> None:
    assert WorkerConfig.load() == WorkerConfig()
    assert WorkerConfig.default_path() == isolated_home / ".config" / "hivemind" / "worker.json"


def test_worker_config_round_trips_in_the_user_config_folder(isolated_home: Path) -> None:
    config = WorkerConfig(
        coordinator_address="coordinator.example:50051",
        node_id="4f6b3c1e-0000-4000-8000-000000000001",
        credential_file="/home/me/hivemind-node.json",
    )

    config.save()

    path = isolated_home / ".config" / "hivemind" / "worker.json"
    assert path.is_file()
    assert WorkerConfig.load() == config
    assert WorkerConfig.load(path) == config


def test_worker_config_ignores_keys_it_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "worker.json"
    path.write_text('{"coordinator_address": "a:1", "node_id": "n", "added_later": 3}')

    assert WorkerConfig.load(path) == WorkerConfig(coordinator_address="a:1", node_id="n")


def test_a_damaged_worker_config_is_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "worker.json"
    path.write_text("[1, 2")

    with pytest.raises(WorkerConfigError, match=r"settings file .* is damaged"):
        WorkerConfig.load(path)
