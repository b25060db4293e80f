"""Build HiveMind's desktop installer: the one command.

    .venv/bin/python installer/build.py            # dist/hivemind/ (+ dist/hivemind_<v>_<arch>.deb on Linux)
    .venv/bin/python installer/build.py --no-deb   # the bundle only (what Windows and macOS build first)

Runs PyInstaller on installer/hivemind.spec (a one-folder bundle in dist/hivemind/), then on Linux lays
out and packs the .deb with dpkg-deb. Prints the sizes and the time taken, and writes them to
dist/build-info.json. Windows (Inno Setup) and macOS (.app/.dmg): see docs/INSTALLER.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from installer import deb  # noqa: E402

SPEC = REPO / "installer" / "hivemind.spec"
ICONS = REPO / "assets" / "icons"
MB = 1_000_000

ESSENTIAL_PACKAGES = frozenset({"libc6", "libgcc-s1", "libstdc++6"})
"""Packages every Debian/Ubuntu system has; the bundle may link to them without a Depends entry
(libc6 still gets one, with the glibc version the bundle needs)."""


class BuildError(Exception):
    """The build cannot go on; ``str()`` says why and what to do."""


def project_version() -> str:
    """The version the ``hivemind`` command reports (one source: coordinator/__init__.py)."""
    text = (REPO / "coordinator" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise BuildError("coordinator/__init__.py has no __version__ line")
    return match.group(1)


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (symlinks not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_pyinstaller(dist: Path, work: Path) -> Path:
    """Build dist/hivemind/ from the spec; returns the bundle folder."""
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(SPEC),
    ]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    bundle = dist / deb.PACKAGE
    if not (bundle / deb.PACKAGE).is_file():
        raise BuildError(f"PyInstaller finished but {bundle / deb.PACKAGE} is missing")
    return bundle


def _elf_files(bundle: Path) -> list[Path]:
    found = []
    for path in bundle.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def system_libraries(bundle: Path) -> set[Path]:
    """The libraries outside the bundle that its executables and libraries load (per ldd)."""
    internal = bundle / "_internal"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        str(p) for p in (internal, internal / "PySide6" / "Qt" / "lib") if p.is_dir()
    )
    outside: set[Path] = set()
    for path in _elf_files(bundle):
        result = subprocess.run(
            ["ldd", str(path)], capture_output=True, text=True, env=env, check=False
        )
        for line in result.stdout.splitlines():
            if "=> not found" in line:
                raise BuildError(
                    f"{path} needs {line.split()[0]}, which is on neither the bundle "
                    "nor this build machine: install it, then build again"
                )
            match = re.search(r"=> (/\S+)", line)
            if match and not Path(match.group(1)).resolve().is_relative_to(bundle.resolve()):
                outside.add(Path(match.group(1)))
    return outside


def owning_packages(libraries: set[Path]) -> set[str]:
    """The Debian packages that ship ``libraries`` on this machine (dpkg -S)."""
    packages: set[str] = set()
    for library in sorted(libraries):
        for candidate in (library, library.resolve()):
            result = subprocess.run(
                ["dpkg-query", "-S", str(candidate)], capture_output=True, text=True, check=False
            )
            if result.returncode == 0:
                packages.update(
                    line.split(":")[0].strip() for line in result.stdout.splitlines() if line
                )
                break
        else:
            raise BuildError(f"No Debian package owns {library}; the .deb cannot depend on it")
    return packages


def symbol_version_needed(bundle: Path, prefix: str) -> tuple[int, ...] | None:
    """The newest ``<prefix>_x.y[.z]`` symbol version (GLIBC, GLIBCXX) any binary in the bundle uses."""
    newest: tuple[int, ...] | None = None
    pattern = re.compile(rf"\b{prefix}_(\d+(?:\.\d+)+)\b")
    for path in _elf_files(bundle):
        result = subprocess.run(
            ["objdump", "-T", str(path)], capture_output=True, text=True, check=False
        )
        for text in pattern.findall(result.stdout):
            version = tuple(int(part) for part in text.split("."))
            newest = version if newest is None else max(newest, version)
    return newest


GLIBCXX_TO_GCC = {26: "9", 27: "9", 28: "10", 29: "11", 30: "12", 31: "13", 32: "13.2", 33: "14"}
"""GLIBCXX_3.4.<n> -> the first GCC release (libstdc++6 version) that provides it."""


def libstdcxx_version_needed(bundle: Path) -> str | None:
    newest = symbol_version_needed(bundle, "GLIBCXX")
    if newest is None:
        return None
    if newest[:2] != (3, 4) or len(newest) < 3 or newest[2] not in GLIBCXX_TO_GCC:
        raise BuildError(
            f"The bundle needs GLIBCXX_{'.'.join(map(str, newest))}, which build.py cannot map to a "
            "libstdc++6 version: add it to GLIBCXX_TO_GCC"
        )
    return GLIBCXX_TO_GCC[newest[2]]


def _package_names(relations: str) -> set[str]:
    """Package names in a Depends-style field: "a (>= 1), b | c:any" -> {a, b, c}."""
    names = set()
    for entry in relations.split(","):
        for alternative in entry.split("|"):
            words = alternative.split()
            if words:
                names.add(words[0].split(":")[0])
    return names


def installed_closure(packages: set[str]) -> set[str]:
    """``packages`` and everything they depend on, as installed on this machine (dpkg-query)."""
    closure: set[str] = set()
    todo = list(packages)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        result = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            todo.extend(_package_names(result.stdout) - closure)
    return closure


def check_depends(bundle: Path, package: deb.DebPackage) -> None:
    """Fail when the bundle links to a system package that the control file's Depends (or what
    those pull in) does not bring."""
    needed = owning_packages(system_libraries(bundle)) - ESSENTIAL_PACKAGES
    brought = installed_closure(_package_names(", ".join(package.depends)))
    missing = sorted(needed - brought)
    if missing:
        raise BuildError(
            f"The bundle needs {', '.join(missing)} from the system, but installer/deb.py's DEPENDS "
            "does not bring them: add them there"
        )


def debian_architecture() -> str:
    result = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def build_deb(bundle: Path, dist: Path, work: Path, version: str, *, xz_level: int = 6) -> Path:
    package = deb.DebPackage(
        version=version,
        architecture=debian_architecture(),
        libc_version=".".join(map(str, symbol_version_needed(bundle, "GLIBC") or (2, 17))),
        libstdcxx_version=libstdcxx_version_needed(bundle),
    )
    check_depends(bundle, package)
    root = work / "deb-root"
    deb.lay_out(root, bundle, ICONS, package)
    output = deb.pack(root, dist / package.file_name, compression_level=xz_level)
    shutil.rmtree(root)
    return output


@dataclass
class BuildInfo:
    """What one build produced; written to dist/build-info.json and printed."""

    version: str
    bundle: str
    bundle_bytes: int
    bundle_seconds: float
    deb: str | None = None
    deb_bytes: int | None = None
    deb_seconds: float | None = None
    total_seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"bundle  {self.bundle}  {self.bundle_bytes / MB:.1f} MB  ({self.bundle_seconds} s)"
        ]
        if self.deb is not None and self.deb_bytes is not None:
            lines.append(
                f"deb     {self.deb}  {self.deb_bytes / MB:.1f} MB  ({self.deb_seconds} s)"
            )
        lines.append(f"built in {self.total_seconds} s")
        return "\n".join(lines)


def build(
    dist: Path, work: Path, *, with_deb: bool, skip_bundle: bool = False, xz_level: int = 6
) -> BuildInfo:
    started = time.perf_counter()
    version = project_version()
    bundle = dist / deb.PACKAGE if skip_bundle else run_pyinstaller(dist, work / "pyinstaller")
    bundle_done = time.perf_counter()
    info = BuildInfo(
        version=version,
        bundle=str(bundle),
        bundle_bytes=folder_size(bundle),
        bundle_seconds=round(bundle_done - started, 1),
    )
    if with_deb:
        if shutil.which("dpkg-deb") is None:
            raise BuildError("dpkg-deb is missing: install dpkg, or pass --no-deb")
        package_file = build_deb(bundle, dist, work, version, xz_level=xz_level)
        info.deb = str(package_file)
        info.deb_bytes = package_file.stat().st_size
        info.deb_seconds = round(time.perf_counter() - bundle_done, 1)
    info.total_seconds = round(time.perf_counter() - started, 1)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build HiveMind's desktop bundle (PyInstaller) and, on Linux, its .deb."
    )
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="output folder (dist/)")
    parser.add_argument(
        "--work", type=Path, default=REPO / "build" / "installer", help="scratch folder"
    )
    parser.add_argument("--no-deb", action="store_true", help="build the bundle only")
    parser.add_argument(
        "--skip-bundle", action="store_true", help="reuse dist/hivemind/ (only repack the .deb)"
    )
    parser.add_argument(
        "--xz-level",
        type=int,
        choices=range(10),
        default=6,
        metavar="0-9",
        help="the .deb's xz level (default 6: ~43 MB, ~2 CPU-minutes; 1: ~48 MB, ~15 CPU-seconds)",
    )
    args = parser.parse_args(argv)
    dist: Path = args.dist.resolve()
    try:
        info = build(
            dist,
            args.work.resolve(),
            with_deb=sys.platform.startswith("linux") and not args.no_deb,
            skip_bundle=args.skip_bundle,
            xz_level=args.xz_level,
        )
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        command = " ".join(map(str, exc.cmd))
        print(f"build failed: {command} exited with {exc.returncode}", file=sys.stderr)
        return 1
    (dist / "build-info.json").write_text(json.dumps(asdict(info), indent=2) + "\n", "utf-8")
    print(info.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
