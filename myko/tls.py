"""Transport security: the one place gRPC and HTTPS credentials are built from TlsSettings.

Two kinds of listener (docs/security.md, "Transport"):

- internal: RepoService (repo_svc's port) and command_svc's internal port,
  which other Myko services call. With TLS on they require a client
  certificate signed by the deployment's CA (mutual TLS); the certificate's
  common name is the caller's service identity, checked against the
  catalogue's `callers` (myko/catalogue.py). Without a certificate the TLS
  handshake fails, so nothing of the request is read.
- public: command, query, report (gRPC) and the gateway (HTTP), which
  callers with bearer tokens use. TLS (server certificate only) when
  `MYKO_TLS_PUBLIC=true`, plaintext otherwise.

Clients verify servers against the CA with the *service name* as TLS server
name (the certificate carries it as a DNS name), whatever host or IP the
address names: a follower forwarding to the leader's container IP checks it
reached a `command`, not merely someone with a certificate.

Without TLS settings everything is plaintext, as in `make run`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from myko.errors import ConfigError, PermissionDenied, Unauthenticated, echo
from myko.pki import Identity, load_identity
from myko.settings import TlsSettings

log = logging.getLogger(__name__)

ChannelOption = tuple[str, Any]
# Where gRPC's auth context keeps a verified client certificate's common name.
_PEER_NAME = "x509_common_name"


@dataclass(frozen=True)
class _Material:
    cert_chain: bytes
    key: bytes
    ca: bytes
    identity: Identity


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}={path!r} cannot be read: {exc.strerror}") from None


def _load(settings: TlsSettings) -> _Material:
    cert = _read(settings.cert_file, "MYKO_TLS_CERT")
    key = _read(settings.key_file, "MYKO_TLS_KEY")
    ca = _read(settings.ca_file, "MYKO_TLS_CA")
    identity = load_identity(cert, key, ca, what=f"MYKO_TLS_CERT={settings.cert_file}")
    return _Material(cert_chain=cert, key=key, ca=ca, identity=identity)


def peer_identity(ctx: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The service identity of a caller that presented a verified client certificate.

    Only internal listeners ask for client certificates, so a call through a
    public listener (or a plaintext one) has none.
    """
    for name in ctx.auth_context().get(_PEER_NAME, ()):
        return bytes(name).decode("utf-8", errors="replace")
    return None


class Transport:
    """This process's TLS material, read and checked once (a bad file fails the start)."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._material = _load(settings) if settings.enabled else None
        if self._material is not None:
            log.info(
                "TLS on: identity %r (certificate valid until %s), public listeners %s",
                self._material.identity.name,
                f"{self._material.identity.not_after:%Y-%m-%d}",
                "TLS" if settings.public else "plaintext",
            )

    @property
    def enabled(self) -> bool:
        return self._material is not None

    @property
    def identity(self) -> str | None:
        """This service's own identity (its certificate's common name); None without TLS."""
        return self._material.identity.name if self._material is not None else None

    # -- servers ---------------------------------------------------------------------------

    def server_credentials(self, *, internal: bool) -> grpc.ServerCredentials | None:
        """None: listen in plaintext."""
        m = self._material
        if m is None or not (internal or self.settings.public):
            return None
        if internal:
            return grpc.ssl_server_credentials(
                [(m.key, m.cert_chain)], root_certificates=m.ca, require_client_auth=True
            )
        # Public: no client certificate is asked for (callers bring tokens), so
        # a call through this listener never has a peer identity.
        return grpc.ssl_server_credentials([(m.key, m.cert_chain)])

    def add_port(self, server: grpc.aio.Server, address: str, *, internal: bool) -> int:
        """Bind `address` the way its kind of listener is secured; the bound port (0 = failed)."""
        credentials = self.server_credentials(internal=internal)
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)

    def caller(self, ctx: grpc.aio.ServicerContext[Any, Any], allowed: Collection[str]) -> str | None:
        """The Myko service calling through an internal listener, if it may; None on a public one.

        PermissionDenied for a service identity not in `allowed`. Without TLS
        nobody is identified (None): the plaintext of a local run.
        """
        name = peer_identity(ctx) if self.enabled else None
        if name is not None and name not in allowed:
            raise PermissionDenied(
                f"service {echo(name)} may not call this; allowed: {', '.join(sorted(allowed))}"
            )
        return name

    def require_caller(self, ctx: grpc.aio.ServicerContext[Any, Any], allowed: Collection[str]) -> str | None:
        """Like `caller`, for methods only other Myko services may call (RepoService).

        Their listener already refused any handshake without a valid client
        certificate; this names the service and checks it is one of `allowed`.
        """
        name = self.caller(ctx, allowed)
        if self.enabled and name is None:
            raise Unauthenticated("only Myko services with a client certificate may call this")
        return name

    # -- clients ---------------------------------------------------------------------------

    def channel_credentials(self, *, internal: bool) -> grpc.ChannelCredentials | None:
        """Credentials to reach a listener of the given kind; None = plaintext."""
        m = self._material
        if m is None or not (internal or self.settings.public):
            return None
        if internal:
            return grpc.ssl_channel_credentials(
                root_certificates=m.ca, private_key=m.key, certificate_chain=m.cert_chain
            )
        return grpc.ssl_channel_credentials(root_certificates=m.ca)

    def channel_options(self, service: str) -> list[ChannelOption]:
        """Verify the server as `service` (its certificate's DNS name), whatever the address."""
        if self._material is None:
            return []
        return [("grpc.ssl_target_name_override", service)]

    def channel(
        self, addr: str, *, service: str, internal: bool, options: Sequence[ChannelOption] = ()
    ) -> grpc.aio.Channel:
        """A channel to `service` at `addr`, secured for the listener it reaches."""
        credentials = self.channel_credentials(internal=internal)
        if credentials is None:
            return grpc.aio.insecure_channel(addr, options=list(options))
        return grpc.aio.secure_channel(addr, credentials, options=[*options, *self.channel_options(service)])

    # -- HTTPS (the gateway) -----------------------------------------------------------------

    def https_context(self) -> ssl.SSLContext | None:
        """The gateway's server context when public listeners use TLS; None = plain HTTP."""
        if self._material is None or not self.settings.public:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        return context

    def probe_context(self) -> ssl.SSLContext:
        """A client context trusting the CA, for probing our own HTTPS listener on loopback."""
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        # The probe asks whether this process serves, not who it is.
        context.check_hostname = False
        return context
