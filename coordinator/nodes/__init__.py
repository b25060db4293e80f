"""Worker nodes: registration, node credentials, status and liveness."""
