"""One exception type per failure, each carrying its HTTP status; `rest/app.py` maps them all to
`{"error": "..."}` with one handler (MLServer's MLServerError idea). Nothing here knows about HTTP
frameworks: the data plane raises these, the REST layer translates."""

from __future__ import annotations


class ServingError(Exception):
    """Base of every failure the service reports to a client."""

    status_code: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServingError):
    """The request is malformed: wrong JSON, wrong tensor shape or datatype, unknown input or output."""

    status_code = 400


class ImageDecodeError(BadRequest):
    """An uploaded image cannot be decoded (unsupported format, truncated, not an image)."""


class UnsupportedMediaType(ServingError):
    """The request's Content-Type / Content-Encoding is not one this endpoint reads."""

    status_code = 415


class PayloadTooLarge(ServingError):
    """The request body (or a decoded image) is larger than the configured limit."""

    status_code = 413


class ClientClosedRequest(ServingError):
    """The client went away before its request body had arrived (nginx's 499): nobody reads the answer,
    and it counts as the client's doing, not the server's."""

    status_code = 499


class ModelNotFound(ServingError):
    """No such model (or version) in the store / among the loaded models."""

    status_code = 404


class ModelNotReady(ServingError):
    """The model exists but is loading, unloading or unloaded."""

    status_code = 503


class ServerBusy(ServingError):
    """The model's queue is full: try again later (Retry-After)."""

    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ModelLoadError(ServingError):
    """A model cannot be loaded: broken store entry, onnxruntime refused the file, warm-up failed."""

    status_code = 500


class ProviderError(ModelLoadError):
    """The execution providers asked for are not in use (ZOOSERVE_REQUIRE_GPU without a GPU)."""


class InferenceFailed(ServingError):
    """onnxruntime failed while running a batch; every request of that batch gets this error."""

    status_code = 500


class ShuttingDown(ServingError):
    """The server is stopping and takes no new work."""

    status_code = 503


def error_body(message: str) -> bytes:
    """The one error shape of every endpoint: {"error": "..."}."""
    import orjson

    return orjson.dumps({"error": message})
