"""Local job images, built without any registry: ``python -m client_gui.engine.images busybox``.

``hivemind/busybox:latest`` is a FROM-scratch image of Debian's static busybox with one symlink per applet
(what ``busybox --install -s /bin`` would make), imported with ``docker import``. The demo and CI use it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time

import docker
import docker.errors

BUSYBOX_IMAGE = "hivemind/busybox:latest"
BUSYBOX_RECIPE = "1"
BUSYBOX_BINARY = "/bin/busybox"


class ImageError(Exception):
    """A local image could not be built; the message says what to install or start."""


def _recipe(client: docker.DockerClient, image: str) -> str:
    try:
        labels = client.images.get(image).labels or {}
    except docker.errors.ImageNotFound:
        return ""
    return str(labels.get("org.hivemind.recipe", ""))


def _busybox_rootfs() -> bytes:
    binary = shutil.which("busybox") if not os.path.exists(BUSYBOX_BINARY) else BUSYBOX_BINARY
    if not binary:
        raise ImageError(
            "busybox is not installed. On Debian/Ubuntu: sudo apt-get install busybox-static"
        )
    if subprocess.run(["ldd", binary], capture_output=True).returncode == 0:
        raise ImageError(
            f"{binary} is dynamically linked; install busybox-static instead of busybox."
        )
    applets = subprocess.run(
        [binary, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("proc", 0o755),
                                ("sys", 0o755), ("dev", 0o755), ("home", 0o755), ("var", 0o755)):  # fmt: skip
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)
        tar.add(binary, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname, link.mode, link.mtime = (
                    tarfile.SYMTYPE,
                    "busybox",
                    0o777,
                    now,
                )
                tar.addfile(link)
        for name, text in (
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            ),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ensure_busybox_image(
    client: docker.DockerClient | None = None, *, rebuild: bool = False
) -> str:
    """Build ``hivemind/busybox:latest`` unless the current recipe is already there. Returns the image name."""
    try:
        client = client or docker.from_env(timeout=60)
        if not rebuild and _recipe(client, BUSYBOX_IMAGE) == BUSYBOX_RECIPE:
            return BUSYBOX_IMAGE
        repository, tag = BUSYBOX_IMAGE.split(":")
        client.api.import_image_from_data(
            _busybox_rootfs(),
            repository=repository,
            tag=tag,
            changes=[
                f"LABEL org.hivemind.recipe={BUSYBOX_RECIPE}",
                "ENV PATH=/bin",
                'CMD ["/bin/sh"]',
            ],
        )
    except docker.errors.DockerException as exc:
        raise ImageError(f"Docker could not build {BUSYBOX_IMAGE}: {exc}") from exc
    return BUSYBOX_IMAGE


def main(argv: list[str]) -> int:
    if argv[:1] != ["busybox"]:
        print("usage: python -m client_gui.engine.images busybox [--rebuild]", file=sys.stderr)
        return 2
    try:
        print(ensure_busybox_image(rebuild="--rebuild" in argv))
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
