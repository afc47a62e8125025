"""The demo's report as text: a heading, then one section per topic, the verdict last.

Each section is a function of the scored report and the profile that returns its lines,
labelled in a 16-character column; `SECTIONS` is their order.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

from reconciler.config import Settings
from reconciler.demo.profile import Profile
from reconciler.domain.delivery import DeliveryPolicy
from reconciler.domain.policy import PollPolicy

PRODUCTION = PollPolicy()  # the service's defaults, for comparison with the demo's policy
PRODUCTION_NOTIFY = Settings().notify  # likewise for deliveries to merchants
INDENT = " " * 18
WIDTH = 100

Section = Callable[[dict[str, Any], Profile], list[str]]


def fmt(value: float | int | None, unit: str = "") -> str:
    """Format a count as is and a measure with two decimals; `-` for no data."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.2f}{unit}"


def duration(seconds: float) -> str:
    """Format seconds in the largest unit that divides them (`2 s`, `1 h`, `3 d`)."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def describe_faults(profile: Profile) -> str:
    """Describe the fault profile in one line."""
    if profile.webhooks:
        hooks = (
            f"webhooks {profile.webhook_loss:.0%} lost, {profile.webhook_duplicate:.0%} "
            f"duplicated, {profile.webhook_reorder:.0%} reordered"
        )
    else:
        hooks = "no webhooks"
    faults = f"{hooks}; calls {profile.p_5xx:.0%} 5xx"
    if profile.outage_s > 0:
        faults += f"; {profile.outage_s:g} s outage at +{profile.outage_at_s:g} s"
    return faults


def describe_endpoint(profile: Profile) -> str:
    """Describe the merchant endpoint's faults in one line."""
    faults = (
        f"endpoint {profile.endpoint_p_503:.0%} 503, {profile.endpoint_p_slow:.0%} answered "
        f"after {duration(profile.slow_answer_s)} (timeout {duration(profile.notify_timeout_s)})"
    )
    if profile.endpoint_outage_s > 0:
        faults += (
            f"; {duration(profile.endpoint_outage_s)} outage at +{profile.endpoint_outage_at_s:g} s"
        )
    return faults


def describe_delivery(policy: DeliveryPolicy, timeout_s: float) -> str:
    """Describe a delivery schedule in one line: backoff, cap, give-up and timeout."""
    first = f"after {duration(policy.first_delay)}" if policy.first_delay else "at once"
    return (
        f"{first}, then {duration(policy.base_delay)} x{policy.factor:g} "
        f"up to {duration(policy.max_delay)}, give up after {duration(policy.give_up_after)}; "
        f"timeout {duration(timeout_s)}"
    )


def describe_policy(policy: PollPolicy) -> str:
    """Describe a poll policy in one line: first delay, backoff, cap and give-up."""
    return (
        f"first poll after {duration(policy.first_delay)}, then {duration(policy.base_delay)} "
        f"x{policy.factor:g} up to {duration(policy.max_delay)}, "
        f"give up after {duration(policy.give_up_after)}"
    )


def render(report: dict[str, Any], profile: Profile, elapsed_s: float) -> str:
    """Render the report as text, one topic a line."""
    seed = f" (seed {profile.seed})" if profile.seed is not None else ""
    lines = [f"Reconciler demo: {report['payments']} payments in {elapsed_s:.1f} s{seed}"]
    for section in SECTIONS:
        lines += section(report, profile)
    return "\n".join(lines)


def _labelled(label: str, first: str, *more: str) -> list[str]:
    return [f"  {label:<16}{first}", *(INDENT + line for line in more)]


def faults(report: dict[str, Any], profile: Profile) -> list[str]:
    if not profile.notifications:
        return _labelled("faults", describe_faults(profile))
    return _labelled("faults", describe_faults(profile), describe_endpoint(profile))


def policy(report: dict[str, Any], profile: Profile) -> list[str]:
    return _labelled(
        "policy",
        describe_policy(profile.policy),
        f"production: {describe_policy(PRODUCTION)}",
    )


def notify_policy(report: dict[str, Any], profile: Profile) -> list[str]:
    if not profile.notifications:
        return []
    return _labelled(
        "notify policy",
        describe_delivery(profile.delivery_policy, profile.notify_timeout_s),
        "production: " + describe_delivery(PRODUCTION_NOTIFY.policy, PRODUCTION_NOTIFY.timeout_s),
    )


def payments(report: dict[str, Any], profile: Profile) -> list[str]:
    return _labelled(
        "payments",
        f"{report['converged']} converged, {report['wrong']} wrong, "
        f"{report['not_settled']} not settled, "
        f"{report['not_created_at_gateway']} not created at the gateway",
    )


def gateway_calls(report: dict[str, Any], profile: Profile) -> list[str]:
    calls = report["gateway_calls"]
    return _labelled(
        "gateway calls",
        f"{calls['total']} ({calls['creates']} creates, {calls['polls']} polls)"
        f" = {calls['per_payment']:.2f} per payment",
    )


def polls(report: dict[str, Any], profile: Profile) -> list[str]:
    per_payment = report["polls_per_payment"]
    arrived, lost = per_payment["webhook_arrived"], per_payment["webhook_lost"]
    lines = [
        f"terminal webhook lost:    mean {fmt(lost['mean'])}, max {fmt(lost['max'])} "
        f"(n={lost['n']}), polls found the outcome",
        f"terminal webhook arrived: mean {fmt(arrived['mean'])}, max {fmt(arrived['max'])} "
        f"(n={arrived['n']}), checks before it came",
    ]
    first = profile.policy.first_delay
    if first < PRODUCTION.first_delay:
        why = (
            f"why more than in production: the demo polls {duration(first)} after creation on "
            f"purpose, to converge fast; production waits {duration(PRODUCTION.first_delay)} "
            "for the webhook first, so there a payment whose webhook arrives is seldom polled"
        )
        lines += textwrap.wrap(why, WIDTH - len(INDENT))
    return _labelled("polls/payment", *lines)


def staleness(report: dict[str, Any], profile: Profile) -> list[str]:
    stale = report["staleness_s"]
    everyone, arrived, lost = stale["all"], stale["webhook_arrived"], stale["webhook_lost"]
    return _labelled(
        "staleness",
        f"gateway settled -> we settled: p50 {fmt(everyone['p50'], ' s')}"
        f"  p95 {fmt(everyone['p95'], ' s')}  p99 {fmt(everyone['p99'], ' s')}",
        f"webhook arrived p50 {fmt(arrived['p50'], ' s')} p99 {fmt(arrived['p99'], ' s')}; "
        f"webhook lost p50 {fmt(lost['p50'], ' s')} p99 {fmt(lost['p99'], ' s')}",
    )


def outage(report: dict[str, Any], profile: Profile) -> list[str]:
    window = report["outage"]
    if not window:
        return _labelled("outage", "none")
    return _labelled(
        "outage",
        f"{window['duration_s']:.1f} s: {window['calls']} gateway calls "
        f"during it ({window['answered_503']} answered 503); the breaker held the rest",
    )


def webhooks(report: dict[str, Any], profile: Profile) -> list[str]:
    hooks = report["webhooks"]
    return [
        *_labelled(
            "webhooks",
            f"{hooks['events']} events: {hooks['delivered_ok']} delivered, "
            f"{hooks['lost']} lost, {hooks['duplicate_copies_sent']} duplicate copies, "
            f"{hooks['reordered_sent']} reordered",
        ),
        *_labelled(
            "duplicates",
            f"{hooks['duplicates_recorded']} recorded as duplicates, "
            f"{hooks['applied_twice']} applied twice",
        ),
    ]


def notifications(report: dict[str, Any], profile: Profile) -> list[str]:
    notified = report.get("notifications")
    if not notified:
        return _labelled("notifications", "none: no merchant endpoint in this run")
    tries, latency, answers = (
        notified["attempts_per_delivery"],
        notified["latency_s"],
        notified["answers"],
    )
    view = notified["merchant_view"]
    first = notified["first_attempt_s"]
    why = (
        f"waits: at most {profile.notify_max_in_flight_per_endpoint} attempts in flight per "
        "endpoint (an answer past the timeout holds its slot for "
        f"{duration(profile.notify_timeout_s)})"
    )
    if profile.endpoint_outage_s > 0:
        why += (
            "; in the outage the breaker holds deliveries back (cooldown "
            f"{duration(profile.breaker_cooldown_s)} doubling to "
            f"{duration(profile.breaker_max_cooldown_s)})"
        )
    return _labelled(
        "notifications",
        f"{notified['events']} events, {notified['deliveries']} deliveries: "
        f"{notified['delivered']} delivered, {notified['failed']} failed, "
        f"{notified['pending']} pending; {notified['lost']} lost",
        f"attempts/delivery mean {fmt(tries['mean'])}, p99 {fmt(tries['p99'])}, "
        f"max {fmt(tries['max'])} ({notified['attempts']} attempts)",
        f"{notified['requests']} requests: {answers['ok']} ok, {answers['503']} 503, "
        f"{answers['slow']} too late, {answers['outage']} in the outage, "
        f"{answers['rejected']} bad signature",
        f"status change -> delivered: p50 {fmt(latency['p50'], ' s')}"
        f"  p99 {fmt(latency['p99'], ' s')}  max {fmt(latency['max'], ' s')}",
        f"status change -> first attempt: p50 {fmt(first['p50'], ' s')}"
        f"  p99 {fmt(first['p99'], ' s')}  max {fmt(first['max'], ' s')}",
        *textwrap.wrap(why, WIDTH - len(INDENT)),
        f"receiver's latest event matches the final status for {view['matches']}"
        f"/{view['settled']} settled payments",
    )


def verdict(report: dict[str, Any], profile: Profile) -> list[str]:
    notified = report.get("notifications")
    lost = notified["lost"] if notified else 0
    lines = []
    if report["wrong"]:
        lines.append(
            f"FAIL: {report['wrong']} payment(s) disagree with the gateway: "
            + ", ".join(report["wrong_ids"])
        )
    if lost:
        assert notified is not None
        lines.append(f"FAIL: {lost} notification(s) lost: " + ", ".join(notified["lost_ids"]))
    if not report["wrong"]:
        text = "every settled payment matches the gateway's ground truth"
        if report["not_settled"]:
            text += f" ({report['not_settled']} still pending at the timeout)"
        lines.append(text if lines else f"OK: {text}")
    if notified and not lost:
        text = "every status change reached the endpoint, signature verified: 0 lost"
        if notified["pending"]:
            text += f" ({notified['pending']} deliveries still pending at the timeout)"
        lines.append(text)
    return _labelled("verdict", *lines)


SECTIONS: tuple[Section, ...] = (
    faults,
    policy,
    notify_policy,
    payments,
    gateway_calls,
    polls,
    staleness,
    outage,
    webhooks,
    notifications,
    verdict,
)
