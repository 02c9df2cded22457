"""Per-endpoint checks of a request body: stream, model, and the field each endpoint needs."""

from __future__ import annotations

from typing import Any

from batchq.validation.common import encodable, quote
from batchq.validation.types import LineError, ValidationLimits

#: The body field each endpoint needs besides ``model``: (field, how messages name it).
_REQUIRED_FIELD: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("messages", "Messages"),
    "/v1/embeddings": ("input", "Input"),
    "/v1/completions": ("prompt", "Prompt"),
    "/v1/responses": ("input", "Input"),
    "/v1/moderations": ("input", "Input"),
}
_ENDPOINT_TITLES: dict[str, str] = {
    "/v1/chat/completions": "Chat Completions",
    "/v1/embeddings": "Embeddings",
    "/v1/completions": "Completions",
    "/v1/responses": "Responses",
    "/v1/moderations": "Moderations",
}
#: Endpoints whose body may leave ``model`` out: OpenAI's moderations default to their latest model.
_MODEL_OPTIONAL = frozenset({"/v1/moderations"})
#: Endpoints that refuse ``background: true``: a batch line has no later poll to collect a background result.
_NO_BACKGROUND = frozenset({"/v1/responses"})


def check_body(
    body: dict[str, Any], line_no: int, endpoint: str, limits: ValidationLimits, url_ok: bool, errors: list[LineError]
) -> str | None:
    """Check the request body; returns its model if that one is acceptable."""
    stream = body.get("stream")
    if stream is True:
        title = _ENDPOINT_TITLES.get(endpoint, "This endpoint")
        message = f"{title}: Streaming is not supported in the Batch API."
        errors.append(LineError("streaming_unsupported", message, line_no, "body.stream"))
    elif stream is not None and not isinstance(stream, bool):
        errors.append(LineError("invalid_request", "The stream parameter must be a boolean.", line_no, "body.stream"))

    if endpoint in _NO_BACKGROUND and body.get("background") is True:
        message = f"{_ENDPOINT_TITLES[endpoint]}: background mode is not supported in the Batch API."
        errors.append(LineError("invalid_request", message, line_no, "body.background"))

    model = body.get("model")
    accepted: str | None = None
    if model is None and endpoint in _MODEL_OPTIONAL:
        pass  # the upstream applies its default model; the one-model check then sees no model for this line
    elif model is None or model == "":
        errors.append(LineError("invalid_request", "Model parameter is required.", line_no, "body.model"))
    elif not isinstance(model, str):
        errors.append(LineError("invalid_request", "The model parameter must be a string.", line_no, "body.model"))
    elif not encodable(model):
        message = "The model parameter contains an unpaired surrogate and cannot be encoded as UTF-8."
        errors.append(LineError("invalid_request", message, line_no, "body.model"))
    elif limits.served_models is not None and model not in limits.served_models:
        message = f"The provided model {quote(model)} is not supported by the Batch API."
        errors.append(LineError("model_not_found", message, line_no, "body.model"))
    else:
        accepted = model

    # A line aimed at another endpoint would only collect noise here: its invalid_url says enough.
    required = _REQUIRED_FIELD.get(endpoint) if url_ok else None
    if required is not None:
        name, title = required
        param = f"body.{name}"
        value = body.get(name)
        if value is None:
            errors.append(LineError("invalid_request", f"{title} parameter is required.", line_no, param))
        elif name == "messages":
            if not isinstance(value, list) or not value:
                message = "The messages parameter must be a non-empty array."
                errors.append(LineError("invalid_request", message, line_no, param))
            elif not all(isinstance(item, dict) for item in value):
                errors.append(LineError("invalid_request", "Each message must be an object.", line_no, param))
        elif not isinstance(value, str | list):
            message = f"The {name} parameter must be a string or an array."
            errors.append(LineError("invalid_request", message, line_no, param))
    return accepted
