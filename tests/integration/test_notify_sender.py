"""The sender against real HTTP receivers on loopback, verified with `standardwebhooks`."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
import urllib3.exceptions
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from support.hostile import MODES, run_hostile
from support.receiver import Receiver, run_receiver

from reconciler.adapters.notify.destinations import DestinationGuard, pinned_session
from reconciler.adapters.notify.sender import Sender, transport_error

SECRET = "whsec_" + "c2VuZGVyLXRlc3Qtc2VjcmV0LW9uZQ=="  # test-only
OLD_SECRET = "whsec_" + "c2VuZGVyLXRlc3Qtc2VjcmV0LXR3bw=="  # test-only
BODY = json.dumps({"id": "evt_1", "type": "payment.succeeded", "sequence": 1}).encode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as state:
        yield state


def eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout  # a bound on a hang, not a timing assertion
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} never happened")


def sender(timeout_s: float = 5.0, *, allow_private: bool = True, resolver=None) -> Sender:
    guard = (
        DestinationGuard(allow_private=allow_private, resolver=resolver)
        if resolver
        else DestinationGuard(allow_private=allow_private)
    )
    return Sender(pinned_session(guard), timeout_s=timeout_s)


def test_a_delivery_is_signed_so_the_standard_library_verifies_it(receiver: Receiver) -> None:
    outcome = sender().send(receiver.url + "/hook", event_id="evt_1", body=BODY, secrets=[SECRET])
    assert outcome.status_code == 200 and outcome.error is None
    [got] = receiver.received
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["webhook-id"] == "evt_1"
    assert Webhook(SECRET).verify(got.body, got.headers) == json.loads(BODY)


def test_during_rotation_both_secrets_sign_and_either_verifies(receiver: Receiver) -> None:
    sender().send(receiver.url, event_id="evt_1", body=BODY, secrets=[SECRET, OLD_SECRET])
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert all(e.startswith("v1,") for e in got.headers["webhook-signature"].split(" "))
    Webhook(SECRET).verify(got.body, got.headers)
    Webhook(OLD_SECRET).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "b3RoZXItc2VjcmV0").verify(got.body, got.headers)


def test_the_webhook_id_is_the_same_on_every_attempt(receiver: Receiver) -> None:
    clock = iter([datetime.now(UTC), datetime.now(UTC) + timedelta(seconds=90)])
    s = sender()
    s.clock = lambda: next(clock)
    for _ in range(2):
        s.send(receiver.url, event_id="evt_same", body=BODY, secrets=[SECRET])
    ids = {r.headers["webhook-id"] for r in receiver.received}
    stamps = {r.headers["webhook-timestamp"] for r in receiver.received}
    assert ids == {"evt_same"} and len(stamps) == 2


def test_a_redirect_is_reported_and_not_followed(receiver: Receiver) -> None:
    receiver.status = 302
    receiver.headers = {"Location": receiver.url + "/elsewhere"}
    outcome = sender().send(receiver.url + "/hook", event_id="evt_1", body=BODY, secrets=[SECRET])
    assert (outcome.status_code, outcome.location) == (302, receiver.url + "/elsewhere")
    assert [r.path for r in receiver.received] == ["/hook"]


def test_retry_after_is_passed_on_with_the_status(receiver: Receiver) -> None:
    receiver.status = 503
    receiver.headers = {"Retry-After": "120"}
    outcome = sender().send(receiver.url, event_id="evt_1", body=BODY, secrets=[SECRET])
    assert (outcome.status_code, outcome.retry_after) == (503, "120")


def test_an_endpoint_answering_after_the_timeout_is_a_failed_attempt(receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    outcome = sender(timeout_s=0.2).send(
        receiver.url, event_id="evt_1", body=BODY, secrets=[SECRET]
    )
    receiver.hold.set()
    assert outcome.status_code is None
    assert outcome.error == "timeout"


def test_a_closed_port_is_a_failed_attempt_with_the_reason() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = sender().send(f"http://127.0.0.1:{port}/", event_id="e", body=BODY, secrets=[SECRET])
    assert outcome.status_code is None and outcome.error == "connection refused"


def test_loopback_is_refused_at_connect_time_unless_private_destinations_are_allowed(
    receiver: Receiver,
) -> None:
    outcome = sender(allow_private=False).send(
        receiver.url, event_id="evt_1", body=BODY, secrets=[SECRET]
    )
    assert outcome.error == "the address is not allowed"
    assert receiver.received == []


def test_a_name_public_at_registration_and_private_at_connect_time_is_refused(
    receiver: Receiver,
) -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # DNS rebinding
    guard = DestinationGuard(allow_private=False, resolver=lambda host, port: next(answers))
    port = receiver.url.rsplit(":", 1)[1]
    guard.check_url(f"https://rebind.example:{port}/hook")  # registration: public, accepted
    outcome = Sender(pinned_session(guard), timeout_s=5).send(
        f"https://rebind.example:{port}/hook", event_id="evt_1", body=BODY, secrets=[SECRET]
    )
    assert outcome.error == "the address is not allowed"  # naming no address
    assert receiver.received == []


def test_a_connection_goes_to_the_checked_address_keeping_the_host_name(
    receiver: Receiver,
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    guard = DestinationGuard(allow_private=True, resolver=lambda host, port: ["127.0.0.1"])
    outcome = Sender(pinned_session(guard), timeout_s=5).send(
        f"http://hooks.merchant.example:{port}/in", event_id="e", body=BODY, secrets=[SECRET]
    )
    assert outcome.status_code == 200
    assert receiver.received[0].headers["Host"] == f"hooks.merchant.example:{port}"


HOOK_HOST = "hooks.merchant.example"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA and a certificate for HOOK_HOST, made with the openssl command."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=reconciler test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
        "-subj", f"/CN={HOOK_HOST}",
    )  # fmt: skip
    (d / "ext.cnf").write_text(f"subjectAltName=DNS:{HOOK_HOST}\nbasicConstraints=CA:FALSE\n")
    openssl(
        "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip
    return {"ca": str(d / "ca.pem"), "cert": str(d / "leaf.pem"), "key": str(d / "leaf.key")}


@pytest.fixture
def tls_receiver(tls_files: dict[str, str]) -> Iterator[Receiver]:
    with run_receiver(tls=(tls_files["cert"], tls_files["key"])) as state:
        yield state


@pytest.mark.parametrize(
    ("host", "verified"),
    [
        (HOOK_HOST, True),
        ("other.merchant.example", False),  # the certificate does not name this host
    ],
)
def test_tls_to_a_pinned_address_checks_the_certificate_against_the_url_s_host(
    tls_receiver: Receiver, tls_files: dict[str, str], host: str, verified: bool
) -> None:
    port = tls_receiver.url.rsplit(":", 1)[1]
    guard = DestinationGuard(allow_private=True, resolver=lambda name, port: ["127.0.0.1"])
    session = pinned_session(guard)
    session.verify = tls_files["ca"]
    outcome = Sender(session, timeout_s=5).send(
        f"https://{host}:{port}/in", event_id="evt_tls", body=BODY, secrets=[SECRET]
    )
    if verified:
        assert outcome.status_code == 200, outcome.error
        assert tls_receiver.received[0].headers["Host"] == f"{HOOK_HOST}:{port}"
    else:
        assert outcome.status_code is None
        assert "certificate" in (outcome.error or "").lower()
        assert tls_receiver.received == []


@pytest.mark.parametrize("mode", MODES)
def test_a_receiver_that_drips_or_hangs_is_cut_off_at_the_deadline(mode: str) -> None:
    with run_hostile(mode, interval_s=0.05) as hostile:
        outcomes = []
        attempt = threading.Thread(
            target=lambda: outcomes.append(
                sender(timeout_s=0.5).send(hostile.url, event_id="e1", body=BODY, secrets=[SECRET])
            )
        )
        attempt.start()
        attempt.join(timeout=30)  # a bound on a hang, not a timing assertion
        assert outcomes, "the attempt outlived its deadline"
        assert outcomes[0].status_code is None and outcomes[0].error == "timeout"
        assert outcomes[0].duration_s >= 0.5  # the receiver really kept it open that long
        eventually(lambda: len(hostile.finished()) == 1, "the receiver seeing the close")


def test_a_slow_name_lookup_is_a_timeout_not_a_hang(receiver: Receiver) -> None:
    answer = threading.Event()

    def slow_resolver(host: str, port: int) -> list[str]:
        answer.wait(10)  # a DNS server that does not answer
        return ["127.0.0.1"]

    port = receiver.url.rsplit(":", 1)[1]
    try:
        outcome = sender(timeout_s=0.3, resolver=slow_resolver).send(
            f"http://slow-dns.example:{port}/", event_id="e", body=BODY, secrets=[SECRET]
        )
    finally:
        answer.set()
    assert outcome.error == "timeout"
    assert receiver.received == []


@pytest.mark.parametrize(
    ("raised", "words"),
    [
        (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), "timeout"),  # type: ignore[arg-type]
        (
            urllib3.exceptions.ProtocolError("aborted", ConnectionResetError(104, "reset")),
            "connection reset",
        ),
        (requests.ConnectionError(ConnectionRefusedError(111, "refused")), "connection refused"),
        (ssl.SSLError(1, "wrong version number"), "TLS handshake failed"),
        (http.client.RemoteDisconnected("closed"), "connection closed without an answer"),
        (http.client.LineTooLong("header line"), "the answer is not valid HTTP"),
        (RuntimeError("something else"), "request failed"),
    ],
)
def test_every_transport_failure_is_named_in_a_few_words(raised: Exception, words: str) -> None:
    assert transport_error(raised) == words


def test_a_library_error_the_sender_does_not_expect_is_a_failed_attempt_not_a_crash() -> None:
    class Exploding(requests.Session):
        def post(self, *args: object, **kwargs: object) -> requests.Response:
            raise urllib3.exceptions.ReadTimeoutError(None, "/", "raised past requests")  # type: ignore[arg-type]

    outcome = Sender(Exploding(), timeout_s=5).send(
        "http://127.0.0.1:9/", event_id="e", body=BODY, secrets=[SECRET]
    )
    assert outcome.status_code is None and outcome.error == "timeout"


def test_a_tls_receiver_dripping_its_body_is_cut_off_at_the_deadline(
    tls_files: dict[str, str],
) -> None:
    with run_hostile(
        "drip_body", interval_s=0.05, tls=(tls_files["cert"], tls_files["key"])
    ) as hostile:
        port = hostile.url.rsplit(":", 1)[1].split("/")[0]
        guard = DestinationGuard(allow_private=True, resolver=lambda name, port: ["127.0.0.1"])
        session = pinned_session(guard)
        session.verify = tls_files["ca"]
        outcome = Sender(session, timeout_s=0.5).send(
            f"https://{HOOK_HOST}:{port}/hook", event_id="e", body=BODY, secrets=[SECRET]
        )
        assert (outcome.status_code, outcome.error) == (None, "timeout")
        eventually(lambda: len(hostile.finished()) == 1, "the receiver seeing the close")


def test_a_tls_handshake_that_never_completes_is_cut_off_at_the_deadline() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        outcome = sender(timeout_s=0.5).send(
            f"https://127.0.0.1:{port}/", event_id="e", body=BODY, secrets=[SECRET]
        )
    assert (outcome.status_code, outcome.error) == (None, "timeout")
