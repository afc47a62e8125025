"""`reconciler listen` receives real deliveries signed by the sender, verifies and prints them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from werkzeug.serving import make_server

from reconciler.adapters.notify.destinations import DestinationGuard, pinned_session
from reconciler.adapters.notify.sender import Sender, signature_headers
from reconciler.entrypoints.listen import Listener, ListenOptions

SECRET = "whsec_" + "bGlzdGVuLXRlc3Qtc2VjcmV0LTEyMzQ1Ng=="  # test-only


def event(sequence: int = 3, payment: str = "pay_1", status: str = "succeeded") -> bytes:
    return json.dumps(
        {
            "id": f"evt_{payment}_{sequence}",
            "type": f"payment.{status}",
            "created_at": "2026-11-28T10:00:03.000Z",
            "sequence": sequence,
            "data": {"id": payment, "status": status, "sync": {"state": "settled"}},
        }
    ).encode()


def sender() -> Sender:
    return Sender(pinned_session(DestinationGuard(allow_private=True)), timeout_s=10)


@contextmanager
def serving(options: ListenOptions, out: io.StringIO, **kwargs: object) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, Listener(options, out=out, **kwargs), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_listen_command_verifies_prints_and_acknowledges_a_signed_delivery() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "reconciler.entrypoints.cli", "listen"]
    with subprocess.Popen(
        [*command, "--port", "0", "--secret", SECRET],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        assert process.stdout is not None
        try:
            banner = process.stdout.readline()
            url = banner.split("listening on ", 1)[1].split(" ", 1)[0]
            body = event(sequence=3)
            first = sender().send(url, event_id="evt_pay_1_3", body=body, secrets=[SECRET])
            second = sender().send(url, event_id="evt_pay_1_3", body=body, secrets=[SECRET])
            assert (first.status_code, second.status_code) == (200, 200)
            lines = [process.stdout.readline(), process.stdout.readline()]
        finally:
            process.terminate()
            process.communicate(timeout=10)
    assert process.returncode == 0
    assert "payment.succeeded payment=pay_1 status=succeeded sync=settled sequence=3" in lines[0]
    assert "webhook-id=evt_pay_1_3 attempt=1 -> 200" in lines[0]
    assert "attempt=2 -> 200" in lines[1]


def test_a_delivery_signed_with_another_secret_is_rejected() -> None:
    out = io.StringIO()
    other = "whsec_" + "YW5vdGhlci1zZWNyZXQ="
    with serving(ListenOptions(secret=SECRET), out) as url:
        outcome = sender().send(url, event_id="evt_x", body=event(), secrets=[other])
    assert outcome.status_code == 400
    assert "REJECTED signature does not verify" in out.getvalue()


def test_a_rotated_delivery_verifies_with_either_secret() -> None:
    out = io.StringIO()
    other = "whsec_" + "YW5vdGhlci1zZWNyZXQ="
    with serving(ListenOptions(secret=SECRET), out) as url:
        outcome = sender().send(url, event_id="evt_x", body=event(), secrets=[other, SECRET])
    assert outcome.status_code == 200


@pytest.mark.parametrize(
    ("options", "status", "retry_after"),
    [
        (ListenOptions(secret=SECRET, fail_rate=1.0), 503, None),
        (ListenOptions(secret=SECRET, fail_rate=1.0, status=500), 500, None),
        (ListenOptions(secret=SECRET, fail_rate=1.0, status=429, retry_after=30), 429, "30"),
        (ListenOptions(secret=SECRET, fail_rate=1.0, status=410), 410, None),
        (ListenOptions(secret=SECRET, fail_rate=0.0, status=500), 200, None),
    ],
)
def test_failures_on_purpose_answer_the_status_asked_for(
    options: ListenOptions, status: int, retry_after: str | None
) -> None:
    out = io.StringIO()
    with serving(options, out) as url:
        outcome = sender().send(url, event_id="evt_f", body=event(), secrets=[SECRET])
    assert (outcome.status_code, outcome.retry_after) == (status, retry_after)
    assert out.getvalue().rstrip().endswith(f"-> {status}")


def test_a_delay_is_served_before_the_answer() -> None:
    out, waited = io.StringIO(), []
    with serving(ListenOptions(secret=SECRET, delay=2.5), out, sleep=waited.append) as url:
        sender().send(url, event_id="evt_d", body=event(), secrets=[SECRET])
    assert waited == [2.5]


@pytest.mark.parametrize(
    ("options", "printed"),
    [
        (ListenOptions(secret=SECRET, drip=0.2), "dripping the body a byte every 0.2 s"),
        (ListenOptions(secret=SECRET, hang=30), "hanging 30 s after the headers"),
    ],
)
def test_a_hostile_answer_is_cut_off_by_the_senders_deadline(
    options: ListenOptions, printed: str
) -> None:
    out = io.StringIO()
    with serving(options, out) as url:
        outcome = Sender(pinned_session(DestinationGuard(allow_private=True)), timeout_s=0.5).send(
            url, event_id="evt_h", body=event(), secrets=[SECRET]
        )
    assert (outcome.status_code, outcome.error) == (None, "timeout")
    assert printed in out.getvalue()


def test_an_older_sequence_than_one_seen_is_pointed_out() -> None:
    out = io.StringIO()
    with serving(ListenOptions(secret=SECRET), out) as url:
        sender().send(url, event_id="evt_4", body=event(sequence=4), secrets=[SECRET])
        sender().send(url, event_id="evt_3", body=event(sequence=3), secrets=[SECRET])
    first, second = out.getvalue().splitlines()
    assert "older" not in first and "(older than one already seen)" in second


def test_a_non_post_request_is_405() -> None:
    with serving(ListenOptions(secret=SECRET), io.StringIO()) as url:
        assert requests.get(url, timeout=5).status_code == 405


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": "hunter2"}, "secret"),
        ({"secret": "whsec_"}, "secret"),
        ({"secret": SECRET, "fail_rate": 1.5}, "fail-rate"),
        ({"secret": SECRET, "status": 99}, "status"),
        ({"secret": SECRET, "delay": -1}, "delay"),
        ({"secret": SECRET, "drip": -1}, "drip"),
        ({"secret": SECRET, "hang": -0.5}, "hang"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ListenOptions(**kwargs)  # type: ignore[arg-type]


def test_signature_headers_carry_one_entry_per_secret() -> None:
    from datetime import UTC, datetime

    headers = signature_headers("evt_1", b"{}", [SECRET, SECRET], at=datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
