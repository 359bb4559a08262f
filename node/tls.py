"""TLS for clients and between nodes (``--tls-cert``, ``--tls-key``, ``--peer-ca``).

- With a certificate and key, the node serves HTTPS.
- With ``--peer-ca`` too, node-to-node traffic is mutual TLS: the node
  presents its own certificate when it calls a peer and checks the peer's
  against that CA; requests to ``/_cluster/*`` must come with a client
  certificate the CA signed (clients of the API need none), so the
  cluster secret never crosses the wire in clear and a peer without one is
  refused before any secret is checked.

See docs/security.md for making a CA and certificates with openssl.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from contextvars import ContextVar
from pathlib import Path
from typing import Any

log = logging.getLogger("shoal.tls")

# The request scope's mark (see PeerCertProtocol): the names the connection's
# client certificate carries (empty for a certificate that names nothing),
# None when it came without one.
PEER_CERT_KEY = "shoal.peer_certificate"
# The same names for the request being answered (NodeMiddleware sets it), so
# the peer guard can check that a peer's certificate names the member it
# says it is. None: the request did not come through a TLS-aware server.
peer_names: ContextVar[frozenset[str] | None] = ContextVar("shoal_peer_names", default=None)


def normal_name(name: str) -> str:
    """A host or certificate name as compared: lower case, no trailing dot,
    IP addresses in their usual form (IPv6 without brackets, compressed)."""
    name = name.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def certificate_names(peercert: Any) -> frozenset[str] | None:
    """Common names and subject alternative names (DNS names, IP addresses,
    URIs) of a certificate as ``SSLSocket.getpeercert()`` gives it, in
    :func:`normal_name` form; None for no certificate."""
    if not peercert:
        return None
    names = {normal_name(value) for rdn in peercert.get("subject", ()) for key, value in rdn
             if key == "commonName"}  # fmt: skip
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in ("DNS", "IP Address", "URI"):
            names.add(normal_name(value))
    return frozenset(names)


def names_match(names: frozenset[str], wanted: str) -> bool:
    """Whether a certificate with ``names`` names ``wanted`` (a node id or a
    host): exactly, or by a wildcard for its leftmost label only
    (``*.shoal-headless`` names ``shoal-0.shoal-headless``)."""
    wanted = normal_name(wanted)
    if wanted in names:
        return True
    _, dot, rest = wanted.partition(".")
    return bool(dot) and f"*.{rest}" in names


def peer_context(cert: Path | None, key: Path | None, peer_ca: Path | None) -> ssl.SSLContext:
    """How this node calls its peers over https: their certificates checked
    against ``peer_ca`` (the system's CAs without one), ours presented."""
    context = ssl.create_default_context(cafile=str(peer_ca) if peer_ca else None)
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def server_options(cert: Path | None, key: Path | None, peer_ca: Path | None) -> dict[str, Any]:
    """uvicorn's TLS options: none without a certificate."""
    if cert is None or key is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if peer_ca is not None:
        # Optional for the API's clients; a certificate offered is checked.
        options |= {"ssl_ca_certs": str(peer_ca), "ssl_cert_reqs": ssl.CERT_OPTIONAL}
    return options


def check_files(cert: Path | None, key: Path | None, peer_ca: Path | None) -> str | None:
    """Why these files cannot serve TLS (None: they can)."""
    if (cert is None) != (key is None):
        return "--tls-cert and --tls-key go together"
    if peer_ca is not None and cert is None:
        return "--peer-ca needs --tls-cert and --tls-key: a node shows its peers its certificate"
    if cert is None or key is None:
        return None
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(str(cert), str(key))
        if peer_ca is not None:
            server.load_verify_locations(cafile=str(peer_ca))
    except (OSError, ssl.SSLError) as exc:
        return f"the TLS files cannot be used: {exc}"
    return None


def reload(
    cert: Path | None, key: Path | None, peer_ca: Path | None, contexts: list[ssl.SSLContext]
) -> bool:
    """Load renewed certificate files into the contexts in use (``kill -HUP``):
    connections made from then on present the new certificate and trust the
    CA file's certificates. Those already trusted stay trusted: dropping a CA
    needs a restart. Files that do not work leave the old ones in force."""
    if cert is None or key is None:
        log.info("SIGHUP: no certificate to read again (see --tls-cert)")
        return False
    problem = check_files(cert, key, peer_ca)
    if problem is not None:
        log.error("certificates not reloaded, the old ones stay in force: %s", problem)
        return False
    for context in contexts:
        context.load_cert_chain(str(cert), str(key))
        if peer_ca is not None:
            context.load_verify_locations(cafile=str(peer_ca))
    log.info("certificate reloaded from %s for new connections", cert)
    return True


def peer_cert_protocol() -> type:
    """uvicorn's HTTP protocol, marking each request's scope with the names of
    the connection's client certificate (the handshake checked it against
    --peer-ca; None without one). uvicorn does not offer the ASGI TLS extension."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class PeerCertProtocol(HttpToolsProtocol):
        def on_message_begin(self) -> None:
            super().on_message_begin()
            names = certificate_names(self.transport.get_extra_info("peercert"))
            self.scope[PEER_CERT_KEY] = names  # type: ignore[literal-required]

    return PeerCertProtocol
