"""Secure connections: the one place that renders TLS and SASL settings for every client uee
makes (librdkafka's consumers, producers and admin clients, and Faust's aiokafka), and that
says in uee's words why a broker refused a connection.

Secrets (the SASL password, a password file's contents) live in `SecretStr` fields: they
reach the clients' configurations and nothing else, not a log line, an error or a status.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError

from uee.errors import UeeError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from uee.streams.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# librdkafka keys uee sets from its own settings: a pass-through may not set them too.
NAMED = {"security.protocol": "UEE_SECURITY_PROTOCOL", "sasl.mechanism": "UEE_SASL_MECHANISM",
         "sasl.mechanisms": "UEE_SASL_MECHANISM", "sasl.username": "UEE_SASL_USERNAME",
         "sasl.password": "UEE_SASL_PASSWORD", "ssl.ca.location": "UEE_SSL_CA_FILE",
         "ssl.certificate.location": "UEE_SSL_CERT_FILE", "ssl.key.location": "UEE_SSL_KEY_FILE"}
PASSTHROUGH_PREFIX = "UEE_KAFKA_"


class KafkaAuthError(UeeError):
    code = "KAFKA_AUTH"


class KafkaTlsError(UeeError):
    code = "KAFKA_TLS"


def passthrough(environ: dict[str, str]) -> dict[str, str]:
    """librdkafka properties from UEE_KAFKA_<KEY> variables (dots as underscores):
    UEE_KAFKA_SOCKET_TIMEOUT_MS=5000 is socket.timeout.ms=5000."""
    return {name[len(PASSTHROUGH_PREFIX):].lower().replace("_", "."): value
            for name, value in environ.items()
            if name.startswith(PASSTHROUGH_PREFIX) and len(name) > len(PASSTHROUGH_PREFIX)}


def problems(settings: Settings) -> list[str]:
    """What is wrong with the security settings, each with what to set."""
    found = []
    protocol = settings.security_protocol
    sasl = protocol.startswith("SASL_")
    for key, variable in NAMED.items():
        if key in settings.librdkafka:
            found.append(f"librdkafka property {key} is uee's own setting: set {variable} "
                         "instead of UEE_LIBRDKAFKA or UEE_KAFKA_*")
    if sasl:
        if settings.sasl_mechanism is None:
            found.append(f"{protocol} needs UEE_SASL_MECHANISM ({', '.join(MECHANISMS)})")
        if not settings.sasl_username:
            found.append(f"{protocol} needs UEE_SASL_USERNAME")
        if settings.sasl_password is None and settings.sasl_password_file is None:
            found.append(f"{protocol} needs UEE_SASL_PASSWORD or UEE_SASL_PASSWORD_FILE")
    elif settings.sasl_mechanism or settings.sasl_username or settings.sasl_password \
            or settings.sasl_password_file:
        found.append(f"UEE_SASL_* settings are given but UEE_SECURITY_PROTOCOL is {protocol}: "
                     "set it to SASL_SSL (or SASL_PLAINTEXT)")
    if settings.sasl_password is not None and settings.sasl_password_file is not None:
        found.append("give UEE_SASL_PASSWORD or UEE_SASL_PASSWORD_FILE, not both")
    tls = protocol in ("SSL", "SASL_SSL")
    files = {"UEE_SASL_PASSWORD_FILE": settings.sasl_password_file,
             "UEE_SSL_CA_FILE": settings.ssl_ca_file,
             "UEE_SSL_CERT_FILE": settings.ssl_cert_file,
             "UEE_SSL_KEY_FILE": settings.ssl_key_file}
    for variable, path in files.items():
        if path is None:
            continue
        if variable.startswith("UEE_SSL_") and not tls:
            found.append(f"{variable} is given but UEE_SECURITY_PROTOCOL is {protocol}: set it "
                         "to SSL or SASL_SSL")
        elif not Path(path).is_file():
            found.append(f"{variable}={path}: no such file")
    if (settings.ssl_cert_file is None) != (settings.ssl_key_file is None):
        found.append("a client certificate needs both UEE_SSL_CERT_FILE and UEE_SSL_KEY_FILE")
    elif tls and not found:
        try:
            _ssl_context(settings)
        except (ssl.SSLError, OSError) as exc:  # what aiokafka would fail on, said now
            found.append(f"UEE_SSL_CA_FILE, UEE_SSL_CERT_FILE or UEE_SSL_KEY_FILE is not a PEM "
                         f"file Python's ssl can load ({exc})")
    return found


def password(settings: Settings) -> str | None:
    if settings.sasl_password is not None:
        return settings.sasl_password.get_secret_value()
    if settings.sasl_password_file is not None:
        return Path(settings.sasl_password_file).read_text().rstrip("\r\n")
    return None


def librdkafka(settings: Settings) -> dict[str, Any]:
    """The security part of every librdkafka client's configuration."""
    config: dict[str, Any] = {"security.protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL_"):
        config.update({"sasl.mechanism": settings.sasl_mechanism,
                       "sasl.username": settings.sasl_username,
                       "sasl.password": password(settings)})
    for key, path in (("ssl.ca.location", settings.ssl_ca_file),
                      ("ssl.certificate.location", settings.ssl_cert_file),
                      ("ssl.key.location", settings.ssl_key_file)):
        if path is not None:
            config[key] = path
    return config


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The same settings for Faust's aiokafka clients (None: plaintext)."""
    from faust.auth import SASLCredentials, SSLCredentials  # Faust is imported lazily

    protocol = settings.security_protocol
    context = _ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return SSLCredentials(context)
    if protocol.startswith("SASL_"):
        return SASLCredentials(username=settings.sasl_username, password=password(settings),
                               ssl_context=context, mechanism=settings.sasl_mechanism)
    return None


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    # Verified against the CA file (or the system's), host names checked: what librdkafka
    # does by default (ssl.endpoint.identification.algorithm=https).
    context = ssl.create_default_context(cafile=settings.ssl_ca_file)
    if settings.ssl_cert_file is not None:
        context.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file)
    return context


def describe(settings: Settings) -> str:
    """How uee connects, for messages: never a secret."""
    text: str = settings.security_protocol
    if settings.security_protocol.startswith("SASL_"):
        text += f", {settings.sasl_mechanism} as user {settings.sasl_username!r}"
    if settings.ssl_ca_file is not None:
        text += f", CA {settings.ssl_ca_file}"
    return text


def speaks_tls(server: str, timeout: float = 3.0) -> bool | None:
    """Whether HOST:PORT answers a TLS handshake (its certificate unchecked: this only asks
    which protocol the port speaks); None when it cannot be told (no connection)."""
    host, _, port = server.strip().rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=host or None):
                    return True
            except (ssl.SSLError, ConnectionError):
                return False
    except (OSError, ValueError):
        return None


def mismatch(bootstrap: str, settings: Settings) -> UeeError | None:
    """A connection that failed without a reason: is uee speaking the wrong protocol?"""
    tls = settings.security_protocol in ("SSL", "SASL_SSL")
    answer = speaks_tls(bootstrap.split(",")[0])
    if answer is True and not tls:
        return KafkaTlsError(
            f"Kafka at {bootstrap} speaks TLS, and uee connected without it "
            f"({describe(settings)}); set UEE_SECURITY_PROTOCOL=SSL (or SASL_SSL) and "
            "UEE_SSL_CA_FILE")
    if answer is False and tls:
        return KafkaTlsError(
            f"Kafka at {bootstrap} does not speak TLS, and uee connected with it "
            f"({describe(settings)}); check the port, or set UEE_SECURITY_PROTOCOL=PLAINTEXT "
            "(or SASL_PLAINTEXT)")
    return None


def refusal(error: KafkaError, bootstrap: str, settings: Settings) -> UeeError | None:
    """uee's error for a connection the broker refused (an error librdkafka reported on its
    error callback), or None when the error is not about credentials or TLS."""
    code, text = error.code(), error.str()
    how = describe(settings)
    if code == KafkaError._AUTHENTICATION:
        return KafkaAuthError(
            f"Kafka at {bootstrap} refused uee's credentials ({how}): {text}; check "
            "UEE_SASL_USERNAME, UEE_SASL_PASSWORD (or UEE_SASL_PASSWORD_FILE) and "
            "UEE_SASL_MECHANISM")
    if code == KafkaError._SSL or "SSL handshake failed" in text:
        hint = ("check UEE_SSL_CA_FILE: it must hold the CA that signed the broker's "
                "certificate" if "certificate verify failed" in text else
                "check that this port speaks TLS, and UEE_SECURITY_PROTOCOL")
        return KafkaTlsError(f"TLS with Kafka at {bootstrap} failed ({how}): {text}; {hint}")
    return None
