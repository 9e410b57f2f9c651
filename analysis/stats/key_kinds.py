"""Redis's keys by kind against the campaigns a soak accepted (keys.json, foundation/format.py KeyCensus): which kinds
grow with the campaigns, what each holds per campaign, which never expire, and where the ones that expire level off
(the rate times the keys per campaign times their TTL) — and so what a day adds to Redis's used memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from foundation.format import KeyCensus, KeyPattern

__all__ = ["HORIZON_S", "PER_CAMPAIGN", "KeyGrowth", "by_kinds_day_bytes", "key_growth"]

HORIZON_S = 24 * 3600.0  # a day: how far a soak's growth is projected
# A kind of key with at least this many keys per campaign the soak accepted grows with the campaigns.
PER_CAMPAIGN = 0.5


@dataclass(frozen=True)
class KeyGrowth:
    """One kind of key at the soak's end, against the campaigns the soak accepted: how many per campaign, whether
    they expire, what they hold, and where they level off (kinds with a TTL: at the rate times the TTL)."""

    pattern: KeyPattern
    per_campaign: float | None
    bytes_total: float | None
    bytes_per_campaign: float | None
    levels_off_at: float | None  # keys, for a kind that grows with campaigns and expires: rate × per campaign × TTL

    @property
    def grows_with_campaigns(self) -> bool:
        return self.per_campaign is not None and self.per_campaign >= PER_CAMPAIGN

    @property
    def expiry(self) -> str:
        kind = self.pattern
        if kind.with_ttl == 0:
            return "never expires"
        if kind.with_ttl == kind.count:
            return f"expires (TTL left {_seconds(kind.ttl_min_s)}–{_seconds(kind.ttl_max_s)})"
        return f"{kind.with_ttl} of {kind.count} expire (TTL left up to {_seconds(kind.ttl_max_s)})"


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value / 3600:.3g} h" if value >= 3600 else f"{value:,.0f} s"


def by_kinds_day_bytes(keys: Sequence[KeyGrowth], slope_per_s: float, campaigns_per_s: float) -> float | None:
    """What a day adds to Redis's used memory by the kinds of key that grow with the campaigns: those that expire up
    to where they level off, those that never do at the rate, and the growth none of them accounts for (used memory
    beyond the keys' own, a registry holding every finished job) at its slope; None without such kinds."""
    growing = [k for k in keys if k.grows_with_campaigns and k.bytes_per_campaign is not None]
    if not growing or campaigns_per_s <= 0:
        return None
    day, explained_per_s = 0.0, 0.0
    for kind in growing:
        per_s = (kind.bytes_per_campaign or 0.0) * campaigns_per_s
        explained_per_s += per_s
        if kind.levels_off_at is not None:
            plateau = kind.levels_off_at * (kind.pattern.mean_bytes or 0.0)
            day += min(per_s * HORIZON_S, max(0.0, plateau - (kind.bytes_total or 0.0)))
        else:
            day += per_s * HORIZON_S
    return day + max(0.0, slope_per_s - explained_per_s) * HORIZON_S


def key_growth(census: KeyCensus, campaigns: int, rate_per_s: float | None) -> list[KeyGrowth]:
    """Each kind of key the census found, against the `campaigns` accepted."""
    found = []
    for kind in census.patterns:
        per = kind.count / campaigns if campaigns else None
        total = kind.mean_bytes * kind.count if kind.mean_bytes is not None else None
        levels = per * rate_per_s * kind.ttl_max_s if per is not None and per >= PER_CAMPAIGN and rate_per_s \
            and kind.with_ttl == kind.count and kind.ttl_max_s else None
        found.append(KeyGrowth(pattern=kind, per_campaign=round(per, 3) if per is not None else None,
                               bytes_total=total, bytes_per_campaign=total / campaigns if total and campaigns else None,
                               levels_off_at=levels))
    return found
