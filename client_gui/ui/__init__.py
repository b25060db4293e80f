"""The desktop app (PySide6): views build layout, controllers own behaviour, the engine does the work."""
