"""JSON text on its way into a protobuf message: JSON can spell an unpaired surrogate
(`"\\ud800"`), which no UTF-8 string can hold, so protobuf's setters raise on it. Each
string is checked here first, so the caller is told which field is wrong (400) instead of
the setter's ValueError surfacing as an internal error."""

from __future__ import annotations

from service.queries import InvalidRequest


def unicode_text(value: str, field: str) -> str:
    """`value` if it is encodable text, else InvalidRequest naming `field`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"{field} is not valid Unicode text (an unpaired surrogate at {exc.start})"
        ) from None
    return value
