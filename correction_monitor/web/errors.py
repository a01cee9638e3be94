"""The error shape of the API: ``{"error": {"code": <slug>, "message": <text>}}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered to the client with ``status`` and a stable ``code`` slug."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.extra)
        return {"error": error}


def bad_request(code: str, message: str, **extra: Any) -> ApiError:
    return ApiError(400, code, message, **extra)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def forbidden(message: str = "your role may not do this") -> ApiError:
    return ApiError(403, "forbidden", message)


def unauthorized(message: str = "missing or invalid bearer token") -> ApiError:
    err = ApiError(401, "unauthorized", message)
    err.headers["WWW-Authenticate"] = "Bearer"
    return err


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)
