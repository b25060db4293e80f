"""The panel is served by the coordinator itself, beside the API, without taking any of its paths."""

from __future__ import annotations

from tests.support import RunningCoordinator


def test_the_panel_page_and_its_files_are_served_with_a_strict_policy(
    sqlite_coordinator: RunningCoordinator,
) -> None:
    http = sqlite_coordinator.http
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>HiveMind</title>" in page.text
    assert '<script type="module" src="/static/js/app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy

    script = http.get("/static/js/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    assert http.get("/static/css/panel.css").headers["content-type"].startswith("text/css")
    icon = http.get("/icon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in icon.content
    # Nothing outside the static folder is reachable through it.
    assert http.get("/static/../__init__.py").status_code == 404
    assert http.get("/static/%2e%2e/__init__.py").status_code == 404


def test_the_panel_takes_none_of_the_api_paths(sqlite_coordinator: RunningCoordinator) -> None:
    http = sqlite_coordinator.http
    assert http.get("/healthz").json()["status"] == "ok"
    schema = http.get("/openapi.json").json()
    assert "/api/v1/auth/login" in schema["paths"]
    # The panel's own routes are not API operations.
    assert not {"/", "/icon.svg"} & set(schema["paths"])
    assert http.get("/docs").status_code == 200
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and "text/html" not in metrics.headers["content-type"]
    # An unknown API path is the API's JSON 404, not the panel's page.
    missing = http.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")
    unauthenticated = http.get("/api/v1/overview")
    assert unauthenticated.status_code == 401
    assert "error" in unauthenticated.json()
