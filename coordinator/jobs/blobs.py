"""The content-addressed blob store: input files, output files and stdout, each stored once by sha256.

Bytes live on disk under ``<data_dir>/blobs/ab/abcdef...``; the ``blobs`` table records what is complete.
A write goes to a temporary file first and is renamed into place only after its sha256 and size checked
out, so a half-uploaded or corrupted file is never visible.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import InvalidArgument, NotFound
from coordinator.jobs.models import Blob

SHA256_RE = re.compile(r"[0-9a-f]{64}")
CHUNK_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int
    already_present: bool


def check_sha256(value: str, what: str = "sha256") -> str:
    if not SHA256_RE.fullmatch(value or ""):
        raise InvalidArgument(f"The {what} must be 64 lowercase hexadecimal characters.")
    return value


class BlobStore:
    def __init__(self, root: Path, db: Database, clock: Clock) -> None:
        self.root = root
        self.db = db
        self.clock = clock
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        with self.db.read() as session:
            return session.get(Blob, sha256) is not None

    def size_of(self, sha256: str) -> int:
        with self.db.read() as session:
            blob = session.get(Blob, sha256)
        if blob is None:
            raise NotFound(f"No file with sha256 {sha256[:12]}… was uploaded. Upload it first.")
        return blob.size

    def put(
        self,
        chunks: Iterable[bytes],
        *,
        max_size: int,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
    ) -> StoredBlob:
        """Store a stream of bytes. Refuses (and keeps nothing) when it is larger than ``max_size`` or does
        not match the expected sha256 or size."""
        if expected_sha256:
            check_sha256(expected_sha256, "expected sha256")
        if expected_size is not None and expected_size > max_size:
            raise InvalidArgument(self._too_large(max_size))
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_size:
                        raise InvalidArgument(self._too_large(max_size))
                    digest.update(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            if expected_sha256 and sha != expected_sha256:
                raise InvalidArgument(
                    f"The file arrived with sha256 {sha[:12]}… but {expected_sha256[:12]}… was expected; "
                    "it was corrupted on the way. Upload it again."
                )
            if expected_size is not None and expected_size > 0 and size != expected_size:
                raise InvalidArgument(
                    f"The file arrived with {size} bytes but {expected_size} were announced."
                )
            return self._commit(tmp, sha, size)
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, tmp: Path, sha: str, size: int) -> StoredBlob:
        final = self.path_of(sha)
        if final.exists() and self.exists(sha):
            return StoredBlob(sha, size, already_present=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        try:
            with self.db.write() as session:
                if session.get(Blob, sha) is not None:
                    return StoredBlob(sha, size, already_present=True)
                session.add(Blob(sha256=sha, size=size, created_at=self.clock()))
        except IntegrityError:  # stored concurrently by someone else: same bytes
            return StoredBlob(sha, size, already_present=True)
        return StoredBlob(sha, size, already_present=False)

    def read(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        check_sha256(sha256)
        path = self.path_of(sha256)
        if not path.exists():
            raise NotFound(f"No file with sha256 {sha256[:12]}… is stored here.")
        with path.open("rb") as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    @staticmethod
    def _too_large(max_size: int) -> str:
        return f"The file is larger than the limit of {max_size / 1024**2:.0f} MiB. Split it or make it smaller."
