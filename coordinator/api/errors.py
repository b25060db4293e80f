"""Maps domain errors to HTTP responses using the one table in coordinator/errors.py."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from coordinator.errors import HiveMindError, RateLimited, Unauthenticated, status_for


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HiveMindError)
    async def _domain_error(_request: Request, exc: HiveMindError) -> JSONResponse:
        code, http_status = status_for(exc)
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(error_body(code, exc.message), status_code=http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(
                f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg"))
            )
        message = "The request is not valid: " + "; ".join(problems) + "."
        return JSONResponse(error_body("INVALID_ARGUMENT", message), status_code=422)
