#!/usr/bin/env bash
# installer/macos/build_dmg.sh — build HiveMind.app and HiveMind-<version>.dmg on macOS (11+):
#
#   bash installer/macos/build_dmg.sh
#
# Needs Python 3.11+ (python.org or Homebrew) and Xcode's command line tools (iconutil, hdiutil,
# codesign). Builds for the Mac it runs on (arm64 on Apple silicon, x86_64 on Intel).
#   1. makes build/macos/HiveMind.icns from assets/icons/app-<size>.png with iconutil;
#   2. runs installer/build.py --no-deb: PyInstaller's BUNDLE step writes dist/HiveMind.app;
#   3. signs it when HIVEMIND_CODESIGN_IDENTITY is set ("Developer ID Application: ..."), with the
#      hardened runtime that notarization needs (notarize the .dmg afterwards, see docs/INSTALLER.md);
#   4. packs dist/HiveMind-<version>.dmg (the app and a link to /Applications) with hdiutil.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
[ "$(uname -s)" = Darwin ] || { echo "build_dmg.sh runs on macOS only" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -e ".[dev]"
fi

# 1. The app icon: iconutil wants an .iconset folder with these exact names.
iconset=build/macos/HiveMind.iconset
rm -rf "$iconset" && mkdir -p "$iconset"
for size in 16 32 128 256 512; do
    cp "assets/icons/app-$size.png" "$iconset/icon_${size}x${size}.png"
    double=$((size * 2))
    if [ -f "assets/icons/app-$double.png" ]; then
        cp "assets/icons/app-$double.png" "$iconset/icon_${size}x${size}@2x.png"
    else  # no 1024 px PNG in assets/: scale the 512 one up (sips comes with macOS)
        sips -z "$double" "$double" "assets/icons/app-$size.png" --out "$iconset/icon_${size}x${size}@2x.png" >/dev/null
    fi
done
iconutil --convert icns --output build/macos/HiveMind.icns "$iconset"

# 2. The bundle (installer/hivemind.spec adds HiveMind.app on macOS).
.venv/bin/python installer/build.py --no-deb
app=dist/HiveMind.app
[ -d "$app" ] || { echo "PyInstaller did not make $app" >&2; exit 1; }
version=$(.venv/bin/python -c 'import json; print(json.load(open("dist/build-info.json"))["version"])')

# 3. Signing (optional here; Gatekeeper blocks an unsigned app downloaded from the web).
if [ -n "${HIVEMIND_CODESIGN_IDENTITY:-}" ]; then
    codesign --deep --force --options runtime --timestamp \
        --sign "$HIVEMIND_CODESIGN_IDENTITY" "$app"
    codesign --verify --deep --strict "$app"
else
    echo "HIVEMIND_CODESIGN_IDENTITY not set: HiveMind.app is not signed (fine for testing)" >&2
fi

# 4. The disk image: drag HiveMind to Applications.
staging=build/macos/dmg
rm -rf "$staging" && mkdir -p "$staging"
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
dmg="dist/HiveMind-$version.dmg"
rm -f "$dmg"
hdiutil create -volname "HiveMind $version" -srcfolder "$staging" -ov -format UDZO "$dmg"
echo "Built $dmg. Check the app with:"
echo "  $app/Contents/MacOS/hivemind --self-test --coordinator HOST:PORT"
