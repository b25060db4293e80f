"""Views: widgets and layout only. Behaviour lives in :mod:`client_gui.ui.controllers`."""
