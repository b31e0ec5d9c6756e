"""Opening a channel to a hashmatch server: one place for every client's connection
settings (API key, TLS, mutual TLS, message limits)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
API_KEY_ENV = "HASHMATCH_API_KEY"


@dataclass(frozen=True)
class Credentials:
    """An API key (sent as `authorization: Bearer ...` on every call) and TLS files:
    the CA that signed the server's certificate, and for mutual TLS our own pair."""

    api_key: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_env(cls) -> Credentials:
        return cls(api_key=os.environ.get(API_KEY_ENV) or None)


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds the API key to every call, on plaintext channels as on TLS ones."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_key(self, details: Any) -> Any:
        # grpcio hands interceptors a namedtuple of call details.
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_key(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_key(details), requests)


def open_channel(target: str, credentials: Credentials | None = None) -> grpc.Channel:
    credentials = credentials or Credentials.from_env()
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if credentials.ca is not None or credentials.cert is not None:
        ssl = grpc.ssl_channel_credentials(
            root_certificates=credentials.ca.read_bytes() if credentials.ca else None,
            private_key=credentials.key.read_bytes() if credentials.key else None,
            certificate_chain=credentials.cert.read_bytes() if credentials.cert else None,
        )
        channel = grpc.secure_channel(target, ssl, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    if credentials.api_key:
        channel = grpc.intercept_channel(channel, _Bearer(credentials.api_key))
    return channel


class ServiceClient:
    """A client's channel, closed on leaving a `with` block."""

    def __init__(
        self, target: str, *, timeout: float = 60.0, credentials: Credentials | None = None
    ) -> None:
        self._channel = open_channel(target, credentials)
        self._timeout = timeout

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()


def rpc_failure(target: str, exc: grpc.RpcError) -> str:
    """What went wrong with a call to `target`, for a person: status code and detail."""
    if isinstance(exc, grpc.Call):
        return f"server {target}: {exc.code().name}: {exc.details()}"
    return f"server {target}: {exc}"


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI options that make Credentials, passed to the command as `credentials`."""
    import click

    def wrapped(
        api_key: str | None,
        tls_ca: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        **kwargs: Any,
    ) -> Any:
        if (tls_cert is None) != (tls_key is None):
            raise click.UsageError("--tls-cert and --tls-key go together")
        return command(credentials=Credentials(api_key, tls_ca, tls_cert, tls_key), **kwargs)

    wrapped.__name__ = command.__name__
    wrapped.__doc__ = command.__doc__
    # Options declared below this decorator are on `command`; keep them.
    wrapped.__click_params__ = list(getattr(command, "__click_params__", []))  # type: ignore[attr-defined]
    pem = click.Path(exists=True, dir_okay=False, path_type=Path)
    for option in reversed(
        [
            click.option(
                "--api-key", envvar=API_KEY_ENV, default=None, help=f"API key (or ${API_KEY_ENV})."
            ),
            click.option("--tls-ca", type=pem, default=None, help="CA of the server's TLS cert."),
            click.option("--tls-cert", type=pem, default=None, help="Client cert (mutual TLS)."),
            click.option("--tls-key", type=pem, default=None, help="Client key (mutual TLS)."),
        ]
    ):
        wrapped = option(wrapped)
    return wrapped
