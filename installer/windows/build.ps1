# Build HiveMind-Setup-<version>.exe on Windows (run from the repository root in PowerShell):
#   powershell -ExecutionPolicy Bypass -File installer\windows\build.ps1
# Needs Python 3.11+ and Inno Setup 6 (https://jrsoftware.org/isinfo.php; or `winget install JRSoftware.InnoSetup`).
$ErrorActionPreference = "Stop"
Set-Location (Resolve-Path "$PSScriptRoot\..\..")

if (-not (Test-Path .venv\Scripts\python.exe)) {
    py -3.11 -m venv .venv
    .venv\Scripts\python -m pip install -e ".[dev]"
}
.venv\Scripts\python installer\build.py --no-deb
if ($LASTEXITCODE -ne 0) { throw "the PyInstaller build failed" }

$version = (Get-Content dist\build-info.json | ConvertFrom-Json).version
$iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe"
if (-not (Test-Path $iscc)) { $iscc = "$env:ProgramFiles\Inno Setup 6\ISCC.exe" }
& $iscc "/DAppVersion=$version" installer\windows\hivemind.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }

# The installed app must pass its own check (start a coordinator first, or point at one).
Write-Host "Built dist\HiveMind-Setup-$version.exe. Check it with:"
Write-Host "  dist\hivemind\hivemind-cli.exe --self-test --coordinator HOST:PORT"
