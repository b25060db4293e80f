"""Moving files over gRPC streams: receive a client stream into the blob store, send a blob as a stream."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from coordinator.errors import InvalidArgument
from coordinator.jobs.blobs import CHUNK_SIZE, BlobStore, StoredBlob
from shared_proto.v1 import jobs_pb2


async def receive_blob(
    chunks: AsyncIterator[jobs_pb2.FileChunk],
    blobs: BlobStore,
    executor: ThreadPoolExecutor,
    *,
    max_size: int,
) -> tuple[StoredBlob, jobs_pb2.FileChunk | None]:
    """Spool a client stream to a temporary file (refusing it as soon as it passes ``max_size``), then
    store it content-addressed. Returns the stored blob and the first chunk (which carries metadata)."""
    loop = asyncio.get_running_loop()
    first: jobs_pb2.FileChunk | None = None
    size = 0
    fd, name = tempfile.mkstemp(dir=blobs.root / "tmp", prefix="upload-")
    spool = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                if first is None:
                    first = chunk
                    if chunk.total_size > max_size:
                        raise InvalidArgument(BlobStore._too_large(max_size))
                size += len(chunk.data)
                if size > max_size:
                    raise InvalidArgument(BlobStore._too_large(max_size))
                await loop.run_in_executor(executor, out.write, chunk.data)
        expected = first.expected_sha256 if first is not None else ""
        total = first.total_size if first is not None and first.total_size > 0 else None

        def store() -> StoredBlob:
            return blobs.put(
                _read_file(spool),
                max_size=max_size,
                expected_sha256=expected or None,
                expected_size=total,
            )

        stored = await loop.run_in_executor(executor, store)
        return stored, first
    finally:
        await loop.run_in_executor(executor, lambda: spool.unlink(missing_ok=True))


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            yield chunk


async def send_blob(
    blobs: BlobStore, sha256: str, executor: ThreadPoolExecutor
) -> AsyncIterator[jobs_pb2.FileChunk]:
    """Stream a stored blob in chunks, reading the file off the event loop."""
    loop = asyncio.get_running_loop()
    reader = blobs.read(sha256)
    first = True
    while True:
        chunk = await loop.run_in_executor(executor, next, reader, None)
        if chunk is None:
            if first:  # an empty file is still one (empty) message, so the client sees the sha
                yield jobs_pb2.FileChunk(data=b"", expected_sha256=sha256, total_size=0)
            return
        yield jobs_pb2.FileChunk(data=chunk, expected_sha256=sha256 if first else "")
        first = False


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)
