"""The realistic economy benchmark's pure parts: compression, CPU accounting, Celery's backoff."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

from bench.celery_baseline import countdown, parse_policy, parse_settled, policy_env
from bench.cpu import ProcStat, parse_stat, tree_ticks
from bench.realistic import PRODUCTION, Plan, cpu_figures
from reconciler.domain.policy import PollPolicy, next_poll
from reconciler.simulator.config import SimConfig
from reconciler.simulator.state import SimState

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cu: int, cs: int) -> str:
    # proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority ...
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194304 10 0 0 0 {utime} {stime} {cu} {cs} 20 0"


@pytest.mark.parametrize(
    "comm",
    ["python", "celery worker", "a) b (c", "redis-server *:6379"],
)
def test_a_stat_line_parses_whatever_the_command_name_holds(comm: str) -> None:
    assert parse_stat(stat_line(42, comm, 7, 100, 20, 3, 4)) == ProcStat(42, 7, 127)


def test_a_tree_counts_its_root_and_every_descendant_but_nothing_else() -> None:
    stats = [
        ProcStat(10, 1, 5),  # root
        ProcStat(11, 10, 7),  # child
        ProcStat(12, 11, 11),  # grandchild
        ProcStat(20, 1, 1000),  # a stranger
        ProcStat(21, 20, 1000),  # the stranger's child
    ]
    assert tree_ticks(stats, [10]) == 23
    assert tree_ticks(stats, [10, 20]) == 2023
    assert tree_ticks(stats, [99]) == 0


@pytest.mark.parametrize("policy", [PollPolicy(), PollPolicy(5, 2, 3, 100), PollPolicy(1, 1, 1, 1)])
@pytest.mark.parametrize("u", [0.0, 0.37, 0.999])
def test_the_celery_countdown_is_the_services_schedule(policy: PollPolicy, u: float) -> None:
    previous: float | None = None
    for retries in range(12):
        decision = next_poll(
            policy,
            attempt=retries + 1,
            previous_delay=previous,
            now=NOW,
            give_up_at=NOW + timedelta(days=30),
            rand=lambda: u,
        )
        assert decision.at is not None
        expected = (decision.at - NOW).total_seconds()
        assert countdown(retries, policy, u) == pytest.approx(expected)
        previous = decision.delay


def test_the_policy_reaches_the_worker_unchanged() -> None:
    policy = PollPolicy(first_delay=0.5, base_delay=0.5, factor=2.0, max_delay=60.0)
    back = parse_policy(policy_env(policy))
    assert (back.first_delay, back.base_delay, back.factor, back.max_delay) == (0.5, 0.5, 2, 60)


def test_the_settled_hash_decodes_to_times_and_statuses() -> None:
    raw = {b"sim_pay_1": f"{NOW.isoformat()} succeeded".encode()}
    assert parse_settled(raw) == {"sim_pay_1": (NOW, "succeeded")}


@pytest.mark.parametrize("scale", [1.0, 20.0, 60.0])
def test_compression_divides_every_duration_of_the_policy_and_the_population(
    scale: float,
) -> None:
    plan = Plan(payments=100, scale=scale)
    policy = plan.policy()
    assert policy.first_delay * scale == pytest.approx(PRODUCTION.first_delay)
    assert policy.base_delay * scale == pytest.approx(PRODUCTION.base_delay)
    assert policy.max_delay * scale == pytest.approx(PRODUCTION.max_delay)
    assert policy.factor == PRODUCTION.factor
    assert plan.settle_faults()["settle_median_s"] * scale == pytest.approx(20.0)
    assert plan.profile(webhooks=True).sweep_interval_s * scale == pytest.approx(1.0)
    arrivals = plan.arrivals()
    assert len(arrivals) == 100 and arrivals[0] == 0.0
    assert arrivals[-1] * scale < 600.0 <= (arrivals[-1] + arrivals[1]) * scale + 1e-9


def test_staleness_reads_in_production_seconds() -> None:
    assert Plan(payments=3, scale=20.0).staleness([0.5, 1.0, 2.0])["p50"] == 20.0


@pytest.mark.parametrize(
    ("cpu", "idle", "wall", "calls", "busy", "per_call_ms"),
    [
        (10.0, 0.1, 50.0, 1000, 5.0, 5.0),
        (1.0, 0.1, 50.0, 1000, 0.0, 0.0),  # never below zero
        (2.0, 0.0, 10.0, 0, 2.0, 0.0),  # no calls, no division
    ],
)
def test_the_cpu_above_idle_is_shared_among_the_calls(
    cpu: float, idle: float, wall: float, calls: int, busy: float, per_call_ms: float
) -> None:
    figures = cpu_figures(cpu, idle, wall, calls)
    assert figures["busy_cpu_s"] == busy
    assert figures["busy_cpu_ms_per_call"] == per_call_ms


def test_the_simulator_draws_log_normal_settle_times_within_the_clip() -> None:
    config = SimConfig(seed=7, settle_median_s=20.0, settle_sigma=1.5, settle_max_s=2700.0)
    state = SimState(config)
    delays = []
    for i in range(2000):
        payment, _ = state.create_payment(
            amount=100, currency="USD", reference=f"r{i}", idempotency_key=None
        )
        delays.append((payment.final.at - payment.created_at).total_seconds())
    assert 17.0 < statistics.median(delays) < 23.0
    assert min(delays) >= config.settle_min_s and max(delays) <= 2700.0
    assert sum(d > 600 for d in delays) > 0  # a tail into tens of minutes


def test_the_simulator_stays_uniform_without_a_median() -> None:
    state = SimState(SimConfig(seed=7, settle_min_s=1.0, settle_max_s=2.0))
    payment, _ = state.create_payment(
        amount=100, currency="USD", reference="r", idempotency_key=None
    )
    assert 1.0 <= (payment.final.at - payment.created_at).total_seconds() <= 2.0


@pytest.mark.parametrize(
    "changes", [{"settle_median_s": 0.0}, {"settle_median_s": -1.0}, {"settle_sigma": -0.1}]
)
def test_the_simulator_refuses_a_meaningless_log_normal(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimConfig().updated(changes)


def test_log_normal_payments_are_the_same_however_the_calls_interleave() -> None:
    config = SimConfig(seed=11, settle_median_s=20.0, settle_sigma=1.5, settle_max_s=2700.0)

    def lives(fault_draws_between: int) -> list[tuple[float, str]]:
        state = SimState(config)
        out = []
        for i in range(50):
            for _ in range(fault_draws_between):
                state.draw_fault()  # the polls another run makes in between
            payment, _ = state.create_payment(
                amount=100, currency="USD", reference=f"r{i}", idempotency_key=None
            )
            out.append(
                ((payment.final.at - payment.created_at).total_seconds(), payment.final.status)
            )
        return out

    assert lives(0) == lives(3)
