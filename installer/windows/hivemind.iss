; Inno Setup script for HiveMind on Windows (64-bit): HiveMind-Setup-<version>.exe
;
; Build on Windows, from the repository root (see docs/INSTALLER.md):
;   py -3.11 -m venv .venv && .venv\Scripts\pip install -e ".[dev]"
;   .venv\Scripts\python installer\build.py --no-deb
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 installer\windows\hivemind.iss
; or run installer\windows\build.ps1, which does all three.
;
; Installs dist\hivemind\ (hivemind.exe: the tray app; hivemind-cli.exe: the same program with a
; console, for --worker and --self-test) into Program Files, with a Start menu entry and an optional
; desktop shortcut. Uninstalling removes the program folder, the shortcuts and the "start at login"
; entry, and keeps the user's data (%LOCALAPPDATA%\hivemind: settings, worker state, work folder;
; the sign-in in Windows Credential Manager).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#define AppName "HiveMind"
#define AppExe "hivemind.exe"
#define Root "..\.."

[Setup]
; The AppId identifies HiveMind across versions (upgrades replace, uninstall finds it): never change it.
AppId={{6F1C2B9E-3D4A-4E8B-9C71-2A5D8E0F4B13}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=HiveMind
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
OutputDir={#Root}\dist
OutputBaseFilename=HiveMind-Setup-{#AppVersion}
SetupIconFile={#Root}\assets\icons\app.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
PrivilegesRequired=admin
; Close a running HiveMind before files are replaced or removed.
CloseApplications=yes
RestartApplications=no
MinVersion=10.0

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Root}\dist\hivemind\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Lend this computer to HiveMind and earn CPT"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; The app writes this value itself when "Start at login" is on (client_gui/platform/autostart/windows.py).
; Nothing is written here at install time; uninstalling removes the value so Windows does not try to
; start a program that is gone.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: none; ValueName: "{#AppName}"; Flags: uninsdeletevalue dontcreatekey

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop the tray app (and a worker started from it) so its files can be removed.
Filename: "{sys}\taskkill.exe"; Parameters: "/f /t /im {#AppExe}"; Flags: runhidden; RunOnceId: "StopHiveMind"

[UninstallDelete]
; Only the program folder: the user's data in %LOCALAPPDATA%\hivemind stays (see docs/INSTALLER.md).
Type: filesandordirs; Name: "{app}"
