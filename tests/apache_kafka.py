"""Apache Kafka 3.9 from Maven Central: a single KRaft node on loopback, uee's second test broker.

`python -m tests.apache_kafka` (`make kafka`) runs one until Ctrl-C and prints its addresses;
the test fixture starts one per session with UEE_TEST_KAFKA=apache. Maven resolves the
broker's jars once into its local repository (~/.m2); nothing of them is committed. The
broker gets three listeners on free ports: PLAINTEXT, SSL and SASL_SSL (SCRAM-SHA-512, with a
user created when the log directory is formatted), with certificates made here by openssl,
and stops on exit, on error, on Ctrl-C, and when the process that started it dies.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from uee.streams.broker import free_port
from uee.streams.child import die_with_parent

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).resolve().parent / "kafka-broker" / "pom.xml"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "uee"
SCRAM_PASSWORD = "uee-test-secret"  # a throwaway broker's throwaway user


def kafka_cluster_id() -> str:
    """A random cluster id as Kafka makes them: a UUID in URL-safe base64 that does not start
    with '-', which the storage tool's argument parser would take for an option (one id in 64
    did, and the fixture failed to start)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class ApacheKafkaUnavailableError(Exception):
    """Apache Kafka cannot run here; the message says why (no JVM, Maven failed, ...)."""


def missing_tools() -> str | None:
    """Why the Apache Kafka tier cannot run on this machine, or None if it can."""
    for tool, package in (("java", "a JDK (17+)"), ("mvn", "Maven"), ("openssl", "openssl")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH (install {package})"
    return None


def broker_classpath(timeout: float = 900) -> str:
    """The broker's classpath, resolved by Maven (offline first: after the first run every
    jar is in the local repository)."""
    with tempfile.TemporaryDirectory(prefix="uee-kafka-cp-") as folder:
        output = Path(folder) / "classpath.txt"
        tried = []
        for offline in (["-o"], []):
            done = subprocess.run(
                ["mvn", "-q", "-B", *offline, "-f", str(POM), "dependency:build-classpath",
                 f"-Dmdep.outputFile={output}"],
                capture_output=True, text=True, timeout=timeout)
            if done.returncode == 0 and output.exists():
                return output.read_text().strip()
            tried.append((done.stdout + done.stderr).strip().splitlines()[-3:])
    raise ApacheKafkaUnavailableError(
        f"Maven could not resolve Apache Kafka {KAFKA_VERSION} from Maven Central: "
        f"{' | '.join(tried[-1])}")


@dataclass(frozen=True)
class Listeners:
    plaintext: str  # empty for the proxied listeners: their brokers have no other way in
    ssl: str
    sasl_ssl: str
    ca_file: Path  # the CA that signed the broker's certificate (PEM)
    sasl_mechanism: str = SCRAM_MECHANISM
    sasl_username: str = SCRAM_USER
    sasl_password: str = SCRAM_PASSWORD


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A CA and a broker certificate for localhost and 127.0.0.1; returns (ca.pem, the broker's
    PEM keystore: its unencrypted PKCS#8 key followed by its certificate)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "3", "-subj", "/CN=uee test CA", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
             "broker.csr", "-subj", "/CN=localhost", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "broker.pem", "-days", "3", "-extfile", "san.ext",
             cwd=folder)
    keystore = folder / "broker-keystore.pem"
    keystore.write_text((folder / "broker.key").read_text() + (folder / "broker.pem").read_text())
    return folder / "ca.pem", keystore


def server_properties(folder: Path, ports: dict[str, int], keystore: Path) -> str:
    listeners = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{listeners['CONTROLLER']}",
        "listeners=" + ",".join(f"{name}://{address}" for name, address in listeners.items()),
        "advertised.listeners=" + ",".join(
            f"{name}://{address}" for name, address in listeners.items() if name != "CONTROLLER"),
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,"
        "CONTROLLER:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={folder / 'data'}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # The tests use 3 s sessions to rebalance fast; the broker's default minimum is 6 s.
        "group.min.session.timeout.ms=1000",
        "group.max.session.timeout.ms=10000",  # a bound a test can cross (the default: 30 min)
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "",
    ])


LOG4J = """\
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={path}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


class ApacheKafka:
    """`with ApacheKafka() as kafka: kafka.listeners.plaintext ...`"""

    def __init__(self, heap_mb: int = 512, start_timeout: float = 120) -> None:
        self.heap_mb = heap_mb
        self.start_timeout = start_timeout
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._listeners: Listeners | None = None
        self._command: list[str] = []

    @property
    def listeners(self) -> Listeners:
        assert self._listeners is not None, "start the broker first"
        return self._listeners

    @property
    def bootstrap(self) -> str:
        return self.listeners.plaintext

    def __enter__(self) -> ApacheKafka:
        why = missing_tools()
        if why:
            raise ApacheKafkaUnavailableError(why)
        classpath = broker_classpath()
        self.folder = Path(tempfile.mkdtemp(prefix="uee-apache-kafka-"))
        try:
            self._start(classpath, self.folder)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, classpath: str, folder: Path) -> None:
        ca_file, keystore = make_certificates(folder)
        ports = {name: free_port() for name in ("PLAINTEXT", "SSL", "SASL_SSL", "CONTROLLER")}
        properties = folder / "server.properties"
        properties.write_text(server_properties(folder, ports, keystore))
        (folder / "log4j.properties").write_text(LOG4J.format(path=folder / "broker.log"))
        java = ["java", f"-Xmx{self.heap_mb}m", "-Xss1m", "-XX:+UseSerialGC",
                f"-Dlog4j.configuration=file:{folder / 'log4j.properties'}", "-cp", classpath]
        cluster_id = kafka_cluster_id()
        formatted = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties),
             "--add-scram", f"{SCRAM_MECHANISM}=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"],
            capture_output=True, text=True, timeout=120)
        if formatted.returncode != 0:
            raise ApacheKafkaUnavailableError(
                f"formatting the KRaft log directory failed: {formatted.stderr.strip()[-500:]}")
        self._command = [*java, "kafka.Kafka", str(properties)]
        self._launch()
        self._listeners = Listeners(
            plaintext=f"127.0.0.1:{ports['PLAINTEXT']}", ssl=f"127.0.0.1:{ports['SSL']}",
            sasl_ssl=f"127.0.0.1:{ports['SASL_SSL']}", ca_file=ca_file)
        self._wait_until_ready()

    def _launch(self) -> None:
        assert self.folder is not None
        with open(self.folder / "stderr.log", "ab") as stderr:  # the child keeps its own copy
            self.process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL,
                                            stderr=stderr, preexec_fn=die_with_parent)

    def restart(self) -> None:
        """Start the broker again on its ports and log directory (after a kill -9): what
        was acknowledged is back."""
        assert self.process is not None and self.process.poll() is not None, "still running"
        self._launch()
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        from confluent_kafka.admin import AdminClient

        assert self.process is not None
        quiet = logging.getLogger("uee.tests.apache_kafka")  # refused connects while it starts
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000,
                             "logger": quiet})
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ApacheKafkaUnavailableError(
                    f"the broker exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(Exception):
                metadata = admin.list_topics(timeout=2)
                if metadata.brokers and metadata.controller_id >= 0:
                    return
            time.sleep(0.2)
        raise ApacheKafkaUnavailableError(
            f"the broker did not answer within {self.start_timeout:g}s: {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        if self.folder is None:
            return ""
        text = ""
        for name in ("stderr.log", "broker.log"):
            with contextlib.suppress(OSError):
                text += (self.folder / name).read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean shutdown of a one-node KRaft broker: seconds
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def main() -> int:
    """`make kafka`: run one until Ctrl-C."""
    print(f"starting Apache Kafka {KAFKA_VERSION} (KRaft, one node; Maven fetches it the first "
          "time) ...", flush=True)
    try:
        with ApacheKafka() as kafka:
            found = kafka.listeners
            print(f"Apache Kafka {KAFKA_VERSION} is up:\n"
                  f"  bootstrap (PLAINTEXT): {found.plaintext}\n"
                  f"  SSL:                   {found.ssl} (CA: {found.ca_file})\n"
                  f"  SASL_SSL:              {found.sasl_ssl} ({found.sasl_mechanism}, user "
                  f"{found.sasl_username}, password {found.sasl_password})\n"
                  f"e.g. UEE_BOOTSTRAP={found.plaintext} uee topics list\n"
                  "Ctrl-C stops it; its data is deleted.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while kafka.process is not None and kafka.process.poll() is None:
                    time.sleep(0.5)
            if kafka.process is not None and kafka.process.returncode not in (None, 0):
                print(f"the broker died: {kafka.log_tail()}", file=sys.stderr)
                return 1
    except ApacheKafkaUnavailableError as exc:
        print(f"error[KAFKA_UNAVAILABLE]: Apache Kafka cannot run here: {exc}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
