"""`RECONCILER_POLL_FIRST_DELAY_S=auto`: which gateways' first poll follows their webhooks.

The word may stand for the common first delay or a gateway's own
(`RECONCILER_<GATEWAY>_POLL_FIRST_DELAY_S=auto`); a gateway's number overrides a common
`auto`, and the other way round. Until it has seen enough webhooks, `auto` waits the
contract's default, 30 s (`domain.reliability.AutoBounds.fallback_s`), which is the
first delay `PollPolicy` carries for such a gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

AUTO = "auto"
SUFFIX = "POLL_FIRST_DELAY_S"


def is_auto(raw: str | None) -> bool:
    """Say whether a first-delay variable asks for `auto`."""
    return raw is not None and raw.strip().lower() == AUTO


def auto_gateways(env: Mapping[str, str], prefix: str, gateways: Iterable[str]) -> frozenset[str]:
    """Return the gateways whose first delay is `auto` in these variables."""
    common = is_auto(env.get(f"{prefix}{SUFFIX}"))
    chosen = set()
    for gateway in gateways:
        own = env.get(f"{prefix}{gateway.upper()}_{SUFFIX}")
        if is_auto(own) or (common and own in (None, "")):
            chosen.add(gateway)
    return frozenset(chosen)


def without_auto(env: Mapping[str, str], fallback_s: float) -> dict[str, str]:
    """Return the variables with each `auto` replaced by the fallback's number."""
    return {
        name: repr(fallback_s) if name.endswith(SUFFIX) and is_auto(value) else value
        for name, value in env.items()
    }


def auto_env(prefix: str, auto: frozenset[str], gateways: Iterable[str]) -> dict[str, str]:
    """Write the variables that make `auto_gateways` return `auto` again."""
    names = list(gateways)
    if auto and auto == frozenset(names):
        every = {f"{prefix}{gw.upper()}_{SUFFIX}": AUTO for gw in names}
        return {f"{prefix}{SUFFIX}": AUTO, **every}
    return {f"{prefix}{gw.upper()}_{SUFFIX}": AUTO for gw in sorted(auto)}
