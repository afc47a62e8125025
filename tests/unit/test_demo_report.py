"""The demo's scoring, its text report, the plot's caption and the exit code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.demo.cli import conclude
from reconciler.demo.plot import INSTALL_HINT, caption, still_stale
from reconciler.demo.profile import Profile
from reconciler.demo.report import describe_faults, duration, render
from reconciler.demo.scoring import Collected, exit_code, score

T = "2026-11-28T10:00:{:06.3f}Z"


def _call(kind: str, second: float) -> dict[str, Any]:
    return {"kind": kind, "started_at": T.format(second), "answer": 200}


def _run(*, wrong: bool = False) -> Collected:
    """Three payments: one settled by its webhook, one by polls, one the test may spoil."""
    truth = {
        "gw_1": {"final_status": "succeeded", "final_at": T.format(5)},
        "gw_2": {"final_status": "failed", "final_at": T.format(6)},
        "gw_3": {"final_status": "succeeded", "final_at": T.format(7)},
    }
    ours = [
        {"id": "pay_1", "gateway_payment_id": "gw_1", "status": "succeeded"},
        {"id": "pay_2", "gateway_payment_id": "gw_2", "status": "failed"},
        {"id": "pay_3", "gateway_payment_id": "gw_3", "status": "failed" if wrong else "succeeded"},
    ]
    settled_at = {"pay_1": 5.0, "pay_2": 9.0, "pay_3": 7.5}
    for payment in ours:
        payment["settled_at"] = T.format(settled_at[payment["id"]])
    calls = {
        "gw_1": [_call("create", 0), _call("fetch", 2)],
        "gw_2": [_call("create", 0), _call("fetch", 2), _call("fetch", 9)],
        "gw_3": [_call("create", 0)],
    }
    deliveries = [
        {"payment_id": gid, "status": truth[gid]["final_status"], "answer": 200}
        | {"copy": copy, "reordered": False}
        for gid, copy in (("gw_1", "original"), ("gw_1", "duplicate"), ("gw_3", "original"))
    ]
    return Collected(
        ours=ours,
        truth=truth,
        calls={
            "payments": calls,
            "totals": {"all": 6, "by_kind": {"create": 3, "fetch": 3}, "by_answer": {"200": 6}},
        },
        webhooks={
            "deliveries": deliveries,
            "totals": {"events": 3, "delivered_ok": 2},
            "losses": [{"payment_id": "gw_2"}],
        },
        timelines={
            "pay_1": [
                {"gateway_event_id": "evt_1", "outcome": "applied"},
                {"gateway_event_id": "evt_1", "outcome": "duplicate"},
            ],
            "pay_3": [{"gateway_event_id": "evt_3", "outcome": "applied"}],
        },
    )


def _lines(text: str, label: str) -> list[str]:
    """The lines of one section: its labelled line and the indented ones after it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {label} "))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * 18):
        end += 1
    return lines[start:end]


def test_scoring_compares_every_payment_with_the_gateway_truth() -> None:
    report = score(_run(wrong=True))

    assert (report["payments"], report["converged"], report["wrong"]) == (3, 2, 1)
    assert report["wrong_ids"] == ["pay_3"]
    assert report["polls_per_payment"]["webhook_arrived"]["mean"] == 0.5
    assert report["polls_per_payment"]["webhook_lost"]["mean"] == 2.0
    assert report["staleness_s"]["webhook_lost"]["p50"] == 3.0
    assert report["webhooks"]["duplicates_recorded"] == 1
    assert report["webhooks"]["applied_twice"] == 0


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({}, 0),
        ({"wrong": 1}, 1),
        # Wrong outranks unsettled: 1 is the code for "a payment is wrong".
        ({"wrong": 1, "not_settled": 2}, 1),
        ({"not_settled": 2}, 3),
        ({"not_created_at_gateway": 1}, 3),
    ],
)
def test_exit_code_speaks_of_the_payments(changes: dict[str, int], code: int) -> None:
    report = {"wrong": 0, "not_settled": 0, "not_created_at_gateway": 0} | changes
    assert exit_code(report) == code


def test_report_states_the_demo_policy_next_to_productions() -> None:
    text = render(score(_run()), Profile(), 12.0)

    assert _lines(text, "policy") == [
        "  policy          first poll after 2 s, then 1 s x2 up to 8 s, give up after 1 h",
        " " * 18 + "production: first poll after 30 s, then 30 s x2 up to 1 h, give up after 3 d",
    ]


def test_polls_of_a_payment_whose_webhook_arrived_read_as_checks_before_it_came() -> None:
    polls = _lines(render(score(_run()), Profile(), 12.0), "polls/payment")

    assert polls[0].endswith(
        "polls/payment   terminal webhook lost:    mean 2.00, max 2 (n=1), polls found the outcome"
    )
    assert polls[1].endswith(
        " " * 18 + "terminal webhook arrived: mean 0.50, max 1 (n=2), checks before it came"
    )
    assert " ".join(line.strip() for line in polls[2:]) == (
        "why more than in production: the demo polls 2 s after creation on purpose, to converge "
        "fast; production waits 30 s for the webhook first, so there a payment whose webhook "
        "arrives is seldom polled"
    )


@pytest.mark.parametrize(
    ("first_delay_s", "explained"),
    [(2.0, True), (29.0, True), (30.0, False), (45.0, False)],
)
def test_the_eager_polls_are_explained_only_when_the_demo_polls_before_production(
    first_delay_s: float, explained: bool
) -> None:
    text = render(score(_run()), Profile(first_delay_s=first_delay_s), 12.0)
    assert ("why more than in production" in text) is explained


def test_the_policy_and_its_explanation_fit_in_a_hundred_columns() -> None:
    text = render(score(_run()), Profile(), 12.0)
    lines = _lines(text, "policy") + _lines(text, "polls/payment")
    assert max(len(line) for line in lines) <= 100


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.0, "2 s"), (0.5, "0.5 s"), (90.0, "90 s"), (120.0, "2 min"), (3600.0, "1 h")]
    + [(5400.0, "90 min"), (259200.0, "3 d")],
)
def test_durations_are_written_in_the_largest_unit_that_divides_them(
    seconds: float, text: str
) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("profile", "faults"),
    [
        (
            Profile(),
            "webhooks 20% lost, 10% duplicated, 10% reordered; calls 5% 5xx; 5 s outage at +10 s",
        ),
        (Profile(webhooks=False, outage_s=0, p_5xx=0), "no webhooks; calls 0% 5xx"),
    ],
)
def test_the_fault_profile_is_described_in_one_line(profile: Profile, faults: str) -> None:
    assert describe_faults(profile) == faults


def test_the_plot_caption_names_the_fault_profile_and_the_policy() -> None:
    assert caption(Profile(payments=40, seed=3)) == (
        "40 payments, seed 3; faults: webhooks 20% lost, 10% duplicated, 10% reordered; "
        "calls 5% 5xx; 5 s outage at +10 s; poll policy: first poll after 2 s, then 1 s x2 up "
        "to 8 s, give up after 1 h"
    )


def test_the_staleness_tail_is_the_share_still_stale_after_each_sample() -> None:
    assert still_stale([3.0, 1.0, 2.0, 4.0]) == ([1.0, 2.0, 3.0, 4.0], [1.0, 0.75, 0.5, 0.25])


@pytest.mark.parametrize(("wrong", "code"), [(False, 0), (True, 1)])
def test_without_the_plot_extra_the_demo_says_how_to_get_it_and_keeps_its_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    wrong: bool,
    code: int,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    data = _run(wrong=wrong)
    report = score(data) | {"elapsed_s": 12.0}
    png = tmp_path / "demo.png"
    args = argparse.Namespace(plot=str(png), json=True)

    assert conclude(report, data, Profile(), args, None) == code

    out, err = capsys.readouterr()
    assert INSTALL_HINT == "pip install 'reconciler[plot]'"
    assert f"no plot written: the plot needs matplotlib: {INSTALL_HINT}" in err
    assert not png.exists()
    text, _, raw = out.partition("\n{")
    assert "verdict         " + ("FAIL" if wrong else "OK") in text
    assert "staleness_samples" not in json.loads("{" + raw)
