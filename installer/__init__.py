"""Build tooling for HiveMind's desktop installers (PyInstaller bundle, .deb, Inno Setup, macOS .app).

Not part of the installed app; ``python installer/build.py`` is the one build command.
"""
