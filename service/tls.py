"""TLS for `serve`, and mutual TLS when a client CA is given: then only callers holding
a certificate that CA signed can even open a connection."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TLS:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


def is_loopback(host: str) -> bool:
    """Whether a --listen host is reachable only from this machine (a Unix socket, localhost,
    or a loopback address); a host name other than localhost is taken as not."""
    if host.startswith("unix"):
        return True
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
