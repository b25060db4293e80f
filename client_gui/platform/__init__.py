"""What differs between operating systems and desktops: idle time, battery power, start at login.

Each concern is one small interface with a module per OS, chosen in one factory. Every module imports
cleanly on every OS: OS-only libraries (winreg, IOKit, Xlib) are loaded inside the functions that use them.
No Qt here.
"""
