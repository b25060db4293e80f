"""The web monitoring panel, served by the coordinator itself on the HTTP port."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the panel's pages and static files to ``app``."""
