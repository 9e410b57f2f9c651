"""The command-line options offpath adds to Locust, and the typed settings the driver reads from them."""

from __future__ import annotations

import argparse
import functools
from dataclasses import asdict, dataclass
from typing import Any

from loadtests.arrivals import SHAPE_HELP, parse_shape
from loadtests.client import POLL_MODES, Following
from loadtests.contract import CAMPAIGNS_FILE, Driven


def _shape(value: str) -> str:
    try:
        parse_shape(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {value})")
    return number


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {value})")
    return number


def add_arguments(parser: Any) -> None:
    """Register offpath's options on Locust's parser (events.init_command_line_parser)."""
    # Straight on Locust's parser, not in an argparse group: only its own add_argument knows include_in_web_ui.
    group = parser
    group.add_argument("--arrival-rate", type=_positive, default=None, metavar="R", include_in_web_ui=True,
                       help="Open model: offer R requests/s in total (split evenly over --processes/workers), each "
                            "timed from its intended send; -u then only sets idle placeholder users (pass -u N -r N, "
                            "N processes). At stop, requests in flight get max(--stop-timeout, 10) s to finish; the "
                            "rest count as failures (status 0). Absent: closed model (users pausing --wait-s).")
    group.add_argument("--rate-shape", type=_shape, default="constant", metavar="SPEC", include_in_web_ui=True,
                       help=SHAPE_HELP)
    group.add_argument("--hdr-dir", default=None, metavar="DIR", include_in_web_ui=False,
                       help="Write 1-second HdrHistogram interval logs (*.hlog, microseconds) and errors.csv here "
                            "(results/README.md). Absent: nothing is recorded beyond Locust's own stats.")
    group.add_argument("--wait-s", type=_non_negative, default=1.0, metavar="S", include_in_web_ui=True,
                       help="Closed model: each user's pause between campaigns (default 1). The CO-corrected log "
                            "expects a user to send every --wait-s plus the endpoint's median latency of the "
                            "previous second (polls: every --poll-interval plus that median).")
    group.add_argument("--poll-interval", type=_non_negative, default=1.0, metavar="S", include_in_web_ui=True,
                       help="An acknowledged request (the queued kind): ask for its state every S seconds until it "
                            "is final (default 1; 0: never follow it, whatever --poll). A finished answer (the inline "
                            "kind): nothing to follow.")
    group.add_argument("--poll", choices=POLL_MODES, default="interval", include_in_web_ui=True,
                       help="An acknowledged request: how the client learns the outcome: interval (GET every "
                            "--poll-interval), retry-after (GET when the service's Retry-After says; --poll-interval "
                            "when it says nothing), wait (a GET the service holds until the state is final: the "
                            "contract's `hold` parameter). Default interval.")
    group.add_argument("--poll-timeout", type=_positive, default=60.0, metavar="S", include_in_web_ui=True,
                       help="Stop polling one campaign after S seconds (default 60).")
    group.add_argument("--payload-seed", type=int, default=1, metavar="N", include_in_web_ui=True,
                       help="Seed of the request bodies (default 1).")
    group.add_argument("--contract", default=None, metavar="FILE", include_in_web_ui=False,
                       help="The design to drive: a contract file ([request] and [outcome], loadtests/contract.py; "
                            "offpath writes one per cell). Absent: offpath's own campaign services "
                            "(services/campaign/contract.toml).")
    group.add_argument("--allow-remote", action="store_true", default=False, include_in_web_ui=False,
                       help="Allow a --host that is not loopback (127.0.0.0/8, ::1). Without it offpath refuses to "
                            "send load anywhere but this machine.")
    group.add_argument("--max-in-flight", type=int, default=1000, metavar="N", include_in_web_ui=False,
                       help="Open model: most requests in flight per Locust process, and its connection pool size "
                            "(default 1000). Reaching it delays sends, which shows in send_lag.hlog and a WARNING.")


@dataclass(frozen=True)
class DriverOptions:
    """offpath's options as one process uses them; the master's copy is authoritative for its workers."""

    arrival_rate: float | None = None
    rate_shape: str = "constant"
    hdr_dir: str | None = None
    wait_s: float = 1.0
    poll_interval: float = 1.0
    poll: str = "interval"
    poll_timeout: float = 60.0
    payload_seed: int = 1
    max_in_flight: int = 1000
    contract: str | None = None

    @property
    def open_model(self) -> bool:
        return self.arrival_rate is not None

    @classmethod
    def from_parsed(cls, parsed: Any) -> DriverOptions:
        """From Locust's parsed options; missing attributes (a foreign parser) take the defaults. The web UI
        hands custom options over as strings (an empty field for an unset one), hence the conversions."""
        defaults = cls()
        values = {name: getattr(parsed, name, getattr(defaults, name)) for name in cls.__dataclass_fields__}
        for name in ("arrival_rate", "hdr_dir", "contract"):
            if values[name] in ("", "None"):
                values[name] = None
        return cls(
            arrival_rate=float(values["arrival_rate"]) if values["arrival_rate"] is not None else None,
            rate_shape=str(values["rate_shape"] or "constant"),
            hdr_dir=str(values["hdr_dir"]) if values["hdr_dir"] is not None else None,
            wait_s=float(values["wait_s"]),
            poll_interval=float(values["poll_interval"]),
            poll=str(values["poll"] or "interval"),
            poll_timeout=float(values["poll_timeout"]),
            payload_seed=int(values["payload_seed"]),
            max_in_flight=int(values["max_in_flight"]),
            contract=str(values["contract"]) if values["contract"] is not None else None,
        )

    def driven(self) -> Driven:
        """The design this run drives (--contract), read once per process."""
        return _driven(self.contract)

    def following(self) -> Following:
        return Following(interval_s=self.poll_interval, mode=self.poll, timeout_s=self.poll_timeout,
                         service_timestamps=self.driven().service_timestamps)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriverOptions:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _driven(path: str | None) -> Driven:
    driven = Driven.read(path or CAMPAIGNS_FILE)
    driven.make_importable()
    return driven


def main() -> None:
    """`python -m loadtests.options`: offpath's options with their help. Locust 2.47 prints `--help` before it
    imports the locustfile, so `locust -f loadtests/locustfile.py --help` cannot list them."""
    from locust.argument_parser import LocustArgumentParser

    parser = LocustArgumentParser(usage="locust -f loadtests/locustfile.py [Locust options] [offpath options]",
                                  description="The options offpath's locustfile adds to Locust's own.")
    add_arguments(parser)
    parser.print_help()


if __name__ == "__main__":
    main()
