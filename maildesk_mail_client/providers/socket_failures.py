"""What went wrong on the socket, as a sentence the admin can act on, for any mail protocol.

IMAP and SMTP fail the same ways before they speak (a name that does not
resolve, a refused port, a TLS certificate or handshake, silence); only the
ports to suggest differ. Protocol-level failures stay with each protocol.
"""

import socket
import ssl

from ..application.errors import ConnectionFailed


def socket_failure(error, *, protocol, host, port, where, timeout, tls_port, starttls_port, during=""):
    """A ConnectionFailed for a socket-level ``error``, or None when it is not one.

    ``during``: what was being done (" while greeting the server"), for a timeout.
    """
    if isinstance(error, socket.gaierror):
        return ConnectionFailed(f"Cannot find the {protocol} server {host!r}: the name does not resolve "
                                f"({error.strerror}). Check the server name for typos, and that this server's DNS "
                                "works.", kind="host")
    if isinstance(error, ConnectionRefusedError):
        return ConnectionFailed(f"{where} refused the connection: nothing accepts connections on port {port}. "
                                f"Check the port (usually {tls_port} for SSL/TLS, {starttls_port} for STARTTLS) and "
                                "that no firewall blocks it.", kind="refused")
    if isinstance(error, ssl.SSLCertVerificationError):
        return ConnectionFailed(f"The TLS certificate of {where} is not trusted ({error.verify_message}). If the "
                                "server uses a self-signed or private certificate, untick Verify Certificate (only "
                                "on a network you trust), or install a certificate from a public authority.",
                                kind="tls")
    if isinstance(error, ssl.SSLError):
        return ConnectionFailed(f"The TLS handshake with {where} failed ({error.reason or error}). Check the "
                                f"security setting: SSL/TLS is usually port {tls_port}, STARTTLS port "
                                f"{starttls_port}.", kind="tls")
    if isinstance(error, TimeoutError | socket.timeout):
        return ConnectionFailed(f"{where} did not answer within {timeout:g} s{during}. Check the server name and "
                                f"port; a port that expects SSL/TLS (usually {tls_port}) stays silent when the "
                                "security is STARTTLS or none.", kind="timeout")
    return None
