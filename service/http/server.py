"""uvicorn serving the HTTP face on a thread of the `serve` process, beside the gRPC
server: one engine, one snapshot, one set of keys for both."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp

from service.tls import TLS


def _bind(listen: str) -> socket.socket:
    """A listening socket with SO_REUSEPORT, so `serve --processes N` shares the port as
    the gRPC server does."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise OSError(f"cannot listen on {listen}: expected HOST:PORT")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(1024)
    except (OSError, OverflowError) as exc:
        sock.close()
        raise OSError(f"cannot listen on {listen}: {exc}") from None
    sock.setblocking(False)
    return sock


class HttpServer:
    def __init__(
        self,
        app: ASGIApp,
        listen: str,
        tls: TLS | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self._socket = _bind(listen)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            # C parsing of each request and a libuv event loop: the pure-Python h11 and
            # asyncio's selector loop cost more per request than a lookup does.
            http="httptools",
            loop="uvloop",
            log_config=None,
            access_log=False,
            server_header=False,
            # X-Forwarded-For only from the proxies named; none named, none believed.
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies),
            timeout_keep_alive=30,
            ssl_certfile=str(tls.cert) if tls is not None else None,
            ssl_keyfile=str(tls.key) if tls is not None else None,
            ssl_ca_certs=str(tls.client_ca) if tls is not None and tls.client_ca else None,
            ssl_cert_reqs=(
                ssl.CERT_REQUIRED if tls is not None and tls.client_ca else ssl.CERT_NONE
            ),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=self._server.config.get_loop_factory()) as runner:
            runner.run(self._server.serve(sockets=[self._socket]))

    def start(self, timeout: float = 30) -> None:
        self._thread.start()
        for _ in range(int(timeout * 100)):
            if self._server.started or not self._thread.is_alive():
                break
            self._thread.join(0.01)
        if not self._server.started:
            raise OSError("the HTTP server did not start")

    def stop(self, grace: float) -> None:
        """Stop taking connections and let requests in flight finish for up to `grace`."""
        self._server.config.timeout_graceful_shutdown = max(1, int(grace))
        self._server.should_exit = True
        self._thread.join(grace + 5)
