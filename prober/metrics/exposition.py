"""The exposition of the families in :mod:`.families`, two ways from the same table.

* :class:`ProberCollector`: a prometheus_client collector that builds every family from the board at
  scrape time (removed targets vanish by themselves, and a scrape never triggers a probe).
* :func:`render_collector`: the same bytes, written directly. prometheus_client's encoders build a
  Sample (a dict of labels) per sample and escape every label on every scrape: for 10,000 targets (about
  300,000 samples, 20 MB) that took 4 to 7 s here. The fast path keeps each target's label text across
  scrapes, formats each distinct number once per scrape and takes the ``# HELP``/``# TYPE`` headers from
  prometheus_client itself. It handles every family type the table has; should it ever fail, the scrape
  is answered by prometheus_client's encoder, counted in ``prober_metrics_render_fallbacks_total`` and
  logged once (tests/test_metrics.py fails on any fallback).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from prober.metrics.families import DAEMON_FAMILIES, TARGET_FAMILIES, DaemonFamily, Facts, Family, metric_types
from prober.status import Board, Histogram, TargetStatus

log = logging.getLogger("prober.metrics")
CHUNK = 1000  # targets per piece of output (keeps the intermediate lists small)


def go_float(value: float) -> str:
    """A number as prometheus_client writes it (Go's formatting)."""
    return cast(str, floatToGoString(value))  # type: ignore[no-untyped-call]


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [(bucket_label(bound), float(count)) for bound, count in histogram.cumulative()]


_BUCKET_LABELS: dict[float, str] = {}


def bucket_label(bound: float) -> str:
    """The ``le`` label of a bucket bound, as prometheus_client formats it; remembered per bound."""
    label = _BUCKET_LABELS.get(bound)
    if label is None:
        label = _BUCKET_LABELS[bound] = "+Inf" if math.isinf(bound) else go_float(bound)
    return label


# --- prometheus_client's collector ----------------------------------------------------------------


def _target_family(family: Family, targets: Iterable[TargetStatus]) -> Metric:
    made = metric_types()[family.type](
        family.name, family.help, labels=["target", "kind", *family.labels], unit=family.unit
    )
    for t in targets:
        base = [t.name, t.kind]
        if family.histogram is not None:
            histogram = family.histogram(t)
            if histogram is not None:
                made.add_metric(base, buckets=_buckets(histogram), sum_value=histogram.total)  # type: ignore[attr-defined]
        elif family.value is not None:
            value = family.value(t)
            if value is not None:
                made.add_metric(base, value)  # type: ignore[attr-defined]
        elif family.samples is not None:
            for labels, value in family.samples(t):
                made.add_metric([*base, *labels], value)  # type: ignore[attr-defined]
    return made


def _daemon_family(family: DaemonFamily, facts: Facts) -> Metric | None:
    made = metric_types()[family.type](family.name, family.help, labels=list(family.labels), unit=family.unit)
    if family.histogram is not None:
        histogram = family.histogram(facts)
        made.add_metric([], buckets=_buckets(histogram), sum_value=histogram.total)  # type: ignore[attr-defined]
        return made
    assert family.samples is not None
    samples = list(family.samples(facts))
    if not samples and not family.labels:
        return None  # an optional single value that is not there yet: no family at all
    for labels, value in samples:
        made.add_metric(list(labels), value)  # type: ignore[attr-defined]
    return made


class ProberCollector(Collector):
    def __init__(self, board: Board) -> None:
        self.board = board
        self.render_fallbacks = 0
        self._rows: dict[str, _Row] = {}

    def collect(self) -> Iterator[Metric]:
        targets = tuple(self.board.targets.values())
        for family in TARGET_FAMILIES:
            yield _target_family(family, targets)
        yield from self.daemon_metrics()

    def daemon_metrics(self) -> Iterator[Metric]:
        facts = Facts(self.board, self.render_fallbacks)
        for family in DAEMON_FAMILIES:
            made = _daemon_family(family, facts)
            if made is not None:
                yield made

    def rows(self) -> list[_Row]:
        """The targets with their label text, for :func:`render_collector`; a snapshot, safe in a worker
        thread. The text is kept across scrapes: a target's name and kind never change (a reload that
        changes the kind makes a new TargetStatus, and so new text)."""
        known, fresh = self._rows, {}
        for status in tuple(self.board.targets.values()):
            row = known.get(status.name)
            if row is None or row.status is not status:
                kind, target = f'kind="{_esc(status.kind)}"', f'target="{_esc(status.name)}"'
                row = _Row(status, kind, target, f"{kind},{target}")
            fresh[status.name] = row
        self._rows = fresh
        return list(fresh.values())


# --- the fast renderer ---------------------------------------------------------------------------


class _Families:
    """Metric families in the shape prometheus_client's encoders take (anything with ``collect()``)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def encode(metrics: Iterable[Metric], openmetrics: bool) -> str:
    """prometheus_client's own encoding, without OpenMetrics' final ``# EOF``."""
    families = cast(CollectorRegistry, _Families(metrics))
    if openmetrics:
        body = cast(bytes, openmetrics_latest(families))  # type: ignore[no-untyped-call]
        return body.decode().removesuffix("# EOF\n")
    return text_latest(families).decode()


def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Numbers(dict[float, str]):
    """floatToGoString, once per distinct value in a scrape (most values repeat: 0, 1, counts)."""

    def __missing__(self, value: float) -> str:
        if -1e6 < value < 1e6:
            # what floatToGoString returns for these (it switches to Go's exponent form only for larger
            # numbers, and treats inf and NaN, which fail this test, apart), without the call
            text = repr(float(value))
        else:
            text = go_float(value)
        self[value] = text
        return text

    def once(self, value: float) -> str:
        """A value that differs per target and run (a latency, a sum): formatted in place, not remembered."""
        return repr(value) if type(value) is float and -1e6 < value < 1e6 else self[value]


class _LabelText(dict[str, str]):
    """``name="value"`` with the value escaped, once per distinct value in a scrape (phase names, reasons,
    roles, versions repeat)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, value: str) -> str:
        text = self[value] = f'{self.name}="{_esc(value)}"'
        return text


@dataclass(frozen=True, slots=True)
class _Row:
    """A target and its label text: ``kind="..."``, ``target="..."`` and both, comma-joined."""

    status: TargetStatus
    kind: str
    target: str
    both: str


def _layout(family: Family) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Where a family's own labels go among ``kind`` and ``target`` (labels are sorted by name, as
    prometheus_client writes them): the indexes of those before ``kind``, between the two, and after
    ``target``."""
    ordered = sorted(range(len(family.labels)), key=lambda index: family.labels[index])
    return (
        tuple(i for i in ordered if family.labels[i] < "kind"),
        tuple(i for i in ordered if "kind" < family.labels[i] < "target"),
        tuple(i for i in ordered if family.labels[i] > "target"),
    )


def _single(family: Family, rows: list[_Row], num: _Numbers, add: Callable[[str], None]) -> None:
    assert family.value is not None
    value_of, name = family.value, family.sample_name
    text = num.once if family.varies else num.__getitem__
    for row in rows:
        value = value_of(row.status)
        if value is not None:
            add(f"{name}{{{row.both}}} {text(value)}\n")


def _labelled(family: Family, rows: list[_Row], num: _Numbers, add: Callable[[str], None]) -> None:
    """Families with labels of their own. Most have one label: its line is a single f-string (this runs
    once per sample, tens of thousands of times a scrape); several labels are joined in their order."""
    assert family.samples is not None
    samples_of, name = family.samples, family.sample_name
    texts = [_LabelText(label) for label in family.labels]
    text = num.once if family.varies else num.__getitem__
    before, middle, after = _layout(family)
    if len(texts) == 1:
        one = texts[0]
        if before:
            for row in rows:
                for labels, value in samples_of(row.status):
                    add(f"{name}{{{one[labels[0]]},{row.both}}} {text(value)}\n")
        elif middle:
            for row in rows:
                for labels, value in samples_of(row.status):
                    add(f"{name}{{{row.kind},{one[labels[0]]},{row.target}}} {text(value)}\n")
        else:
            for row in rows:
                for labels, value in samples_of(row.status):
                    add(f"{name}{{{row.both},{one[labels[0]]}}} {text(value)}\n")
        return
    for row in rows:
        for labels, value in samples_of(row.status):
            parts = [texts[i][labels[i]] for i in before]
            parts.append(row.kind)
            parts += [texts[i][labels[i]] for i in middle]
            parts.append(row.target)
            parts += [texts[i][labels[i]] for i in after]
            add(f"{name}{{{','.join(parts)}}} {text(value)}\n")


def _histograms(family: Family, rows: list[_Row], num: _Numbers, add: Callable[[str], None]) -> None:
    """The buckets' label text is made once per set of bounds, not per line."""
    assert family.histogram is not None
    histogram_of, name = family.histogram, family.name
    bounds: tuple[float, ...] | None = None
    les: tuple[str, ...] = ()
    for row in rows:
        histogram = histogram_of(row.status)  # read once: a reload may replace it meanwhile
        if histogram is None:
            continue
        if histogram.bounds is not bounds:
            bounds = histogram.bounds
            les = tuple(f',le="{bucket_label(b)}",' for b in (*histogram.bounds, math.inf))
        running = 0
        for le, count in zip(les, histogram.counts, strict=True):
            running += count
            add(f"{name}_bucket{{{row.kind}{le}{row.target}}} {num[running]}\n")
        add(f"{name}_count{{{row.both}}} {num[running]}\n")
        add(f"{name}_sum{{{row.both}}} {num.once(histogram.total)}\n")


def _lines(family: Family, rows: list[_Row], num: _Numbers) -> list[str]:
    """The sample lines of one per-target family for some rows, in the collector's order."""
    out: list[str] = []
    if family.histogram is not None:
        _histograms(family, rows, num, out.append)
    elif family.value is not None:
        _single(family, rows, num, out.append)
    else:
        _labelled(family, rows, num, out.append)
    return out


_HEADERS: dict[tuple[str, bool], str] = {}


def _header(family: Family, openmetrics: bool) -> str:
    """``# HELP``/``# TYPE`` (and ``# UNIT``) of a family, from prometheus_client's encoder, once."""
    key = (family.name, openmetrics)
    header = _HEADERS.get(key)
    if header is None:
        header = _HEADERS[key] = encode([_target_family(family, ())], openmetrics)
    return header


def _read(rows: list[_Row]) -> set[str]:
    """The gauge and series keys some target's last result has (see ``Family.reads``)."""
    found: set[str] = set()
    for row in rows:
        last = row.status.last
        if last is not None and (last.gauges or last.series):
            found.update(last.gauges)
            found.update(last.series)
    return found


def _pieces(collector: ProberCollector, openmetrics: bool) -> Iterator[str]:
    """The collector's exposition in pieces of at most ``CHUNK`` targets of one family."""
    num = _Numbers()
    rows = collector.rows()
    present = _read(rows)
    for family in TARGET_FAMILIES:
        yield _header(family, openmetrics)
        if family.reads and family.reads not in present:
            continue
        for start in range(0, len(rows), CHUNK):
            yield "".join(_lines(family, rows[start : start + CHUNK], num))
    yield encode(collector.daemon_metrics(), openmetrics)


def render_collector(collector: ProberCollector, openmetrics: bool) -> str:
    """What prometheus_client would encode for ``collector.collect()``, byte for byte, built quickly."""
    return "".join(_pieces(collector, openmetrics))


class ProberRegistry(CollectorRegistry):
    """The daemon's registry. prometheus_client's encoders work on it as on any registry;
    :meth:`render` produces the same output much faster when targets are many."""

    def __init__(self, board: Board) -> None:
        super().__init__(auto_describe=False)
        self.prober = ProberCollector(board)
        self.register(self.prober)
        self.others: list[Collector] = [
            ProcessCollector(registry=self),
            PlatformCollector(registry=self),
            GCCollector(registry=self),
        ]

    def render(self, openmetrics: bool) -> bytes:
        """The exposition in the Prometheus text format (0.0.4) or OpenMetrics (1.0.0)."""
        try:
            own = render_collector(self.prober, openmetrics)
        except Exception:
            self.prober.render_fallbacks += 1
            if self.prober.render_fallbacks == 1:
                log.exception("the fast /metrics renderer failed; prometheus_client's encoder answers instead")
            own = encode(self.prober.collect(), openmetrics)
        others = encode((m for c in self.others for m in c.collect()), openmetrics)
        return (own + others + ("# EOF\n" if openmetrics else "")).encode()


def render(registry: CollectorRegistry, openmetrics: bool) -> bytes:
    """Fast rendering for a :class:`ProberRegistry`, prometheus_client's encoders for any other."""
    if isinstance(registry, ProberRegistry):
        return registry.render(openmetrics)
    if openmetrics:
        return cast(bytes, openmetrics_latest(registry))  # type: ignore[no-untyped-call]
    return text_latest(registry)


def make_registry(board: Board) -> ProberRegistry:
    return ProberRegistry(board)
