"""``dns``: one DNS server answers a query for ``query_name`` with the expected rcode and answers.

Each run sends one query (a fresh socket, UDP or TCP) to one server and reads its one answer, with
dnspython's asyncio query layer (``dns.asyncquery``; over UDP a truncated answer is asked again over TCP,
as resolvers do). dnspython's ``Resolver.resolve`` is not used for the query itself: it tries every
server in turn, appends search domains and retries, and turns rcodes into exceptions that drop the
answer's flags; a probe must see one server's own answer. The default server is the system resolver's
first ``nameserver`` (``/etc/resolv.conf``, read by dnspython's resolver configuration). Phases:
``dns`` (when ``server`` is a host name), ``query``.

dnspython is imported on first use, so a config without dns targets does not load it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field

from prober.errors import ProbeFailure, Words, describe, driver_errors
from prober.judge import Observable, Observation, Rule, unhealthy_if
from prober.models import TargetBase, format_duration, split_address
from prober.probes import _net
from prober.probes._context import ProbeContext
from prober.status import Reason

if TYPE_CHECKING:
    import dns.message

DEFAULT_PORT = 53
RESOLV_CONF = "/etc/resolv.conf"  # the system resolver, when a target names no server
RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS", "SOA"]
Rcode = Literal["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]
FAILING_RCODES = frozenset({"SERVFAIL", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP"})  # the server says no

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_*-]{1,63}(?<!-)$")


def _check_name(name: str) -> str:
    bare = name[:-1] if name.endswith(".") else name
    if not bare or len(bare) > 253 or not all(_LABEL.match(label) for label in bare.split(".")):
        raise ValueError(f"expected a DNS name such as api.example.com, got {name!r}")
    return name


def split_server(server: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    if _net.is_ip(server):
        return server, DEFAULT_PORT
    if server.startswith("[") and server.endswith("]") and _net.is_ip(server[1:-1]):
        return server[1:-1], DEFAULT_PORT
    if ":" in server:
        return split_address(server)
    _check_name(server)
    return server, DEFAULT_PORT


def _check_server(server: str) -> str:
    split_server(server)
    return server


@functools.lru_cache(maxsize=4096)
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:
        return None


class DnsTarget(TargetBase):
    kind: Literal["dns"]
    query_name: Annotated[str, AfterValidator(_check_name)]
    type: RecordType = "A"
    server: Annotated[str, AfterValidator(_check_server)] | None = None  # default: the system resolver
    transport: Literal["udp", "tcp"] = "udp"
    expect_answers: list[str] | None = Field(default=None, min_length=1)
    expect_rcode: Rcode = "NOERROR"

    def where(self) -> str:
        server = self.server or "the system resolver"
        return f"{self.query_name} {self.type} at {server} ({self.transport})"


MODEL = DnsTarget

OBSERVES: dict[str, Observable] = {
    "rcode": Observable("string", "the answer's rcode: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ..."),
    "answers": Observable(
        "list",
        "the records of the asked type in the answer section, as text (names without their final dot, TXT "
        "strings joined and unquoted; MX: '10 mail.example.com')",
    ),
    "ttl_min": Observable("int", "the smallest TTL in the answer section (seconds); absent without answers"),
    "authoritative": Observable("bool", "the AA flag: the server is authoritative for the name"),
    "truncated_retry": Observable("bool", "udp: the answer was truncated and asked again over TCP"),
    "server": Observable("string", "the address asked (host:port)"),
}


def _matches(entry: str, answer: str) -> bool:
    if entry == answer:
        return True
    pattern = _pattern(entry)
    return pattern is not None and pattern.fullmatch(answer) is not None


def _failing_rcode(target: DnsTarget, values: Mapping[str, Any]) -> str | None:
    rcode = values["rcode"]
    if rcode == target.expect_rcode or rcode not in FAILING_RCODES:
        return None
    return f"{rcode} for {target.query_name} {target.type} (expected {target.expect_rcode})"


def _unexpected_rcode(target: DnsTarget, values: Mapping[str, Any]) -> str | None:
    rcode = values["rcode"]
    if rcode == target.expect_rcode:
        return None
    return f"{rcode} for {target.query_name} {target.type} (expected {target.expect_rcode})"


def _no_answer(target: DnsTarget, values: Mapping[str, Any]) -> str | None:
    if target.expect_rcode != "NOERROR" or values["rcode"] != "NOERROR" or values["answers"]:
        return None
    return f"no {target.type} record for {target.query_name} (NOERROR, empty answer)"


def _missing_answers(target: DnsTarget, values: Mapping[str, Any]) -> str | None:
    if not target.expect_answers or values["rcode"] != "NOERROR":
        return None
    answers = values["answers"]
    missing = [entry for entry in target.expect_answers if not any(_matches(entry, a) for a in answers)]
    if not missing:
        return None
    said = ", ".join(answers[:5]) + (", ..." if len(answers) > 5 else "")
    return f"no answer matches {', '.join(map(repr, missing))} (answers: {said})"


RULES: tuple[Rule, ...] = (
    unhealthy_if(_failing_rcode, Reason.DNS),
    unhealthy_if(_unexpected_rcode),
    unhealthy_if(_no_answer),
    unhealthy_if(_missing_answers),
)


# bytes one run may receive (_budget.py): one DNS message (at most 64 KiB) and a retry over TCP
BYTE_BUDGET = 256 * 2**10

WORDS: tuple[Words, ...] = ()  # dnspython's exception types say it all


def classify(exc: BaseException) -> ProbeFailure | None:
    """dnspython's exceptions -> the fixed reasons."""
    import dns.exception
    import dns.message

    if isinstance(exc, dns.exception.Timeout):
        return ProbeFailure(Reason.TIMEOUT, "no answer from the DNS server")
    if isinstance(exc, dns.message.Truncated):
        return ProbeFailure(Reason.PROTOCOL, "truncated answer")
    if isinstance(exc, dns.exception.DNSException | ValueError):  # FormError, ShortHeader, BadResponse, ...
        return ProbeFailure(Reason.PROTOCOL, f"invalid DNS answer: {type(exc).__name__}: {describe(exc)}")
    return None


def system_server() -> tuple[str, int]:
    """The system resolver's first nameserver, as dnspython reads ``RESOLV_CONF``."""
    import dns.exception
    import dns.resolver

    try:
        nameservers = dns.resolver.Resolver(filename=RESOLV_CONF).nameservers
    except dns.resolver.NoResolverConfiguration:
        raise ProbeFailure(Reason.DNS, f"no system resolver: {RESOLV_CONF} names no nameserver") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise ProbeFailure(Reason.DNS, f"no system resolver: {describe(exc)}") from None
    if not nameservers:
        raise ProbeFailure(Reason.DNS, f"no system resolver: {RESOLV_CONF} names no nameserver")
    return str(nameservers[0]), DEFAULT_PORT


def _text(rdata: Any, rdtype: str) -> str:
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return " ".join(
        token[:-1] if token.endswith(".") and len(token) > 1 else token for token in rdata.to_text().split()
    )


def _observe(response: dns.message.Message, target: DnsTarget, address: str, retried: bool) -> dict[str, Any]:
    import dns.flags
    import dns.rcode
    import dns.rdatatype

    wanted = dns.rdatatype.from_text(target.type)
    answers = [_text(rdata, target.type) for rrset in response.answer if rrset.rdtype == wanted for rdata in rrset]
    values: dict[str, Any] = {
        "rcode": dns.rcode.to_text(response.rcode()),
        "answers": answers,
        "authoritative": bool(response.flags & dns.flags.AA),
        "server": address,
    }
    if response.answer:
        values["ttl_min"] = min(rrset.ttl for rrset in response.answer)
    if target.transport == "udp":
        values["truncated_retry"] = retried
    return values


async def probe(target: DnsTarget, ctx: ProbeContext) -> Observation:
    import dns.asyncquery
    import dns.message

    run = ctx.begin(target)
    host, port = split_server(target.server) if target.server else system_server()
    query = dns.message.make_query(target.query_name, target.type)
    async with run.bounded(lambda: f"no answer from the DNS server within {format_duration(run.budget)}"):
        with driver_errors(classify):
            (address,) = (await _net.resolve(host, port, run.phases))[:1]
            with run.phase("query"):
                if target.transport == "tcp":
                    response, retried = await dns.asyncquery.tcp(query, address, run.left(), port), False
                else:
                    response, retried = await dns.asyncquery.udp_with_fallback(query, address, run.left(), port)
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    values = _observe(response, target, where, retried)
    count = len(values["answers"])
    summary = f"{values['rcode']}, {count} {target.type} answer{'s' if count != 1 else ''} from {where}"
    return Observation(values, summary, phases=run.phases, latency=sum(run.phases.values()))
