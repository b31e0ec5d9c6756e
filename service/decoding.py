"""A request that does not decode is bad input, not a server failure.

grpcio answers INTERNAL ("Exception deserializing request!") when a message
can't be parsed. This interceptor decodes tolerantly instead and answers
INVALID_ARGUMENT naming the message type and the parser's complaint; for
client streams, it does so at the message that is bad.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc


class Undecodable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(decode: Callable[[bytes], Any], name: str) -> Callable[[bytes], Any]:
    def run(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as exc:
            return Undecodable(f"request is not a valid {name}: {exc}")

    return run


def _check(request: Any, context: grpc.ServicerContext) -> Any:
    if isinstance(request, Undecodable):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
    return request


def _checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        yield _check(request, context)


class TolerantDecoding(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """grpcio asks the interceptor for every call; each registered method's wrapped
    handler is built once and kept (unregistered names are not kept)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, Any] = {}

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = _wrap(continuation(handler_call_details))
            if wrapped is not None:
                self._wrapped[method] = wrapped
        return wrapped


def _wrap(handler: Any) -> Any:
    if handler is None or handler.request_deserializer is None:
        return handler
    decode = handler.request_deserializer
    name = getattr(getattr(decode, "__self__", None), "DESCRIPTOR", None)
    full_name = name.full_name if name is not None else "message"
    tolerant = _tolerant(decode, full_name)
    if handler.unary_unary is not None:
        behaviour = handler.unary_unary
        return handler._replace(
            request_deserializer=tolerant,
            unary_unary=lambda r, c: behaviour(_check(r, c), c),
        )
    if handler.unary_stream is not None:
        behaviour = handler.unary_stream
        return handler._replace(
            request_deserializer=tolerant,
            unary_stream=lambda r, c: behaviour(_check(r, c), c),
        )
    if handler.stream_unary is not None:
        behaviour = handler.stream_unary
        return handler._replace(
            request_deserializer=tolerant,
            stream_unary=lambda rs, c: behaviour(_checked(rs, c), c),
        )
    behaviour = handler.stream_stream
    return handler._replace(
        request_deserializer=tolerant,
        stream_stream=lambda rs, c: behaviour(_checked(rs, c), c),
    )
