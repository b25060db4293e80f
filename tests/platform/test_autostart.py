"""Start at login: the Linux XDG entry and the macOS LaunchAgent are written and removed for real in a
temporary home; the Windows Run value's command line is built and checked here."""

from __future__ import annotations

import plistlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_gui.platform.autostart import AutostartError, MemoryAutostart, default_autostart
from client_gui.platform.autostart.linux import XdgAutostart, desktop_entry, exec_value
from client_gui.platform.autostart.macos import LaunchAgentAutostart
from client_gui.platform.autostart.windows import (
    RunKeyAutostart,
    run_key_command,
    startup_approved,
)

COMMAND = ["/opt/Hive Mind/hivemind", "gui", "--config-dir", "/home/a b/it's $HOME/100%"]


def parse_exec(value: str) -> list[str]:
    """Undo an ``Exec=`` value as the Desktop Entry spec says a launcher must: string escapes first,
    then quoting, then ``%%`` to ``%``. Written from the spec, independently of the code under test."""
    unescaped, i = "", 0
    escapes = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in escapes:
            unescaped += escapes[value[i + 1]]
            i += 2
        else:
            unescaped += value[i]
            i += 1
    args: list[str] = []
    i = 0
    while i < len(unescaped):
        if unescaped[i] == " ":
            i += 1
            continue
        arg = ""
        if unescaped[i] == '"':
            i += 1
            while unescaped[i] != '"':
                if unescaped[i] == "\\" and unescaped[i + 1] in '"`$\\':
                    i += 1
                arg += unescaped[i]
                i += 1
            i += 1
        else:
            while i < len(unescaped) and unescaped[i] != " ":
                assert unescaped[i] not in "\"'\\><~|&;$*?#()`\t\n", (
                    f"unquoted reserved character in {unescaped!r}"
                )
                arg += unescaped[i]
                i += 1
        args.append(arg.replace("%%", "%"))
    return args


def entry_keys(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line)


def test_linux_autostart_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    autostart = default_autostart("linux")
    assert isinstance(autostart, XdgAutostart)
    entry = tmp_path / "autostart" / "hivemind.desktop"
    assert autostart.description == f"autostart entry {entry}"
    assert not autostart.is_enabled()

    autostart.enable(COMMAND)
    assert autostart.is_enabled()
    keys = entry_keys(entry.read_text())
    assert keys["Type"] == "Application" and keys["Name"] == "HiveMind"
    assert keys["Terminal"] == "false"
    assert keys["Icon"] == "hivemind"  # the theme icon the Linux package installs
    assert parse_exec(keys["Exec"]) == COMMAND
    assert keys["Exec"].startswith('"/opt/Hive Mind/hivemind" gui --config-dir "/home/a b/')

    autostart.enable(["/usr/bin/hivemind", "gui"])  # replaces, never duplicates
    assert parse_exec(entry_keys(entry.read_text())["Exec"]) == ["/usr/bin/hivemind", "gui"]
    assert [p.name for p in entry.parent.iterdir()] == ["hivemind.desktop"]

    autostart.disable()
    assert not entry.exists() and not autostart.is_enabled()
    autostart.disable()  # already off: nothing to do


def test_linux_default_folder_is_dot_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert XdgAutostart().path == tmp_path / ".config" / "autostart" / "hivemind.desktop"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # ignored, as the spec says
    assert XdgAutostart().path == tmp_path / ".config" / "autostart" / "hivemind.desktop"


@pytest.mark.parametrize("switch_off", ["Hidden=true", "X-GNOME-Autostart-enabled=false"])
def test_an_entry_switched_off_by_the_desktop_is_not_enabled(
    tmp_path: Path, switch_off: str
) -> None:
    autostart = XdgAutostart(tmp_path)
    autostart.enable(["hivemind", "gui"])
    text = autostart.path.read_text().replace("X-GNOME-Autostart-enabled=true\n", "")
    autostart.path.write_text(text + switch_off + "\n")
    assert not autostart.is_enabled()


def test_a_folder_that_cannot_be_written_gives_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "autostart").write_text("a file where the folder should be")
    with pytest.raises(
        AutostartError, match="could not add itself to the programs started at login"
    ):
        XdgAutostart(tmp_path).enable(["hivemind"])


@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
        ),
        min_size=1,
        max_size=4,
    )
)
def test_exec_quoting_round_trips(command: list[str]) -> None:
    value = exec_value(command)
    assert "\n" not in value and "\r" not in value  # one line in the file
    assert parse_exec(value) == command


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(AutostartError, match="needs the command"):
        desktop_entry([])


def test_macos_launch_agent(tmp_path: Path) -> None:
    autostart = LaunchAgentAutostart(tmp_path / "LaunchAgents")
    assert not autostart.is_enabled()
    command = ["/Applications/HiveMind.app/Contents/MacOS/hivemind", "gui"]
    autostart.enable(command)
    assert autostart.is_enabled()
    assert autostart.path == tmp_path / "LaunchAgents" / "org.hivemind.app.plist"
    agent = plistlib.loads(autostart.path.read_bytes())
    assert agent == {
        "Label": "org.hivemind.app",
        "ProgramArguments": command,
        "RunAtLoad": True,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    }
    autostart.path.write_bytes(plistlib.dumps({**agent, "Disabled": True}))
    assert not autostart.is_enabled()
    autostart.disable()
    assert not autostart.path.exists()


def test_macos_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    autostart = default_autostart("darwin")
    assert isinstance(autostart, LaunchAgentAutostart)
    assert autostart.path == tmp_path / "Library" / "LaunchAgents" / "org.hivemind.app.plist"


def test_windows_run_value_command_line() -> None:
    line = run_key_command(
        [r"C:\Program Files\HiveMind\hivemind.exe", "gui", "--config-dir", r"C:\Users\a b\hm"]
    )
    assert line == r'"C:\Program Files\HiveMind\hivemind.exe" gui --config-dir "C:\Users\a b\hm"'
    with pytest.raises(AutostartError):
        run_key_command([])
    autostart = default_autostart("win32")
    assert isinstance(autostart, RunKeyAutostart)
    assert autostart.description == (
        r"registry value HKCU\Software\Microsoft\Windows\CurrentVersion\Run\HiveMind"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="parses as Windows would, off Windows")
def test_windows_command_line_round_trips_through_the_c_runtime_rules() -> None:
    # CommandLineToArgvW's rules: backslashes are literal unless they precede a quote.
    command = [r"C:\Program Files\HiveMind\hivemind.exe", 'say "hi"', "trailing\\", ""]
    line = run_key_command(command)
    assert line == r'"C:\Program Files\HiveMind\hivemind.exe" "say \"hi\"" trailing\ ""'
    assert subprocess.list2cmdline(command) == line


@pytest.mark.parametrize(
    ("data", "enabled"),
    [
        (None, True),
        (b"", True),
        (bytes([2] + [0] * 11), True),
        (bytes([6] + [0] * 11), True),
        (bytes([3] + [0] * 11), False),
        (bytes([7] + [0] * 11), False),
    ],
)
def test_task_managers_startup_switch(data: bytes | None, enabled: bool) -> None:
    assert startup_approved(data) is enabled


def test_memory_autostart_for_demos() -> None:
    autostart = MemoryAutostart()
    autostart.enable(["hivemind", "gui"])
    assert autostart.is_enabled() and autostart.command == ["hivemind", "gui"]
    autostart.disable()
    assert not autostart.is_enabled()
