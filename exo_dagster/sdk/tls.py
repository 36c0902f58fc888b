"""The TLS context of a satellite that talks to a server: system CAs plus an optional CA bundle,
an optional client certificate (mutual TLS), and a switch that turns the checks off for a test
server you trust."""

from __future__ import annotations

import ssl


def tls_context(ca_bundle: str | None = None, *, verify: bool = True, client_cert: str | None = None) -> ssl.SSLContext:
    """A client context: `ca_bundle` (a PEM file) adds CAs; `verify=False` checks neither the host name nor
    the chain; `client_cert` (a PEM file with the certificate and its key) is presented to the server."""
    context = ssl.create_default_context(cafile=ca_bundle)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert)
    return context
