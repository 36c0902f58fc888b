"""A cluster's `concurrency: N`: at most N of its runs at once, whichever way they were launched.

The limit is the cluster's definition, never a run's tags: any launcher can set run tags (`--tags`, the
Launchpad) and Dagster lets them override a job's. Two mechanisms hold it:

- the run queue (run_queue.ExoRunCoordinator): the daemon keeps queued runs back by the run tag
  `exo/concurrency` = `N:<project>/<name>`, which the coordinator rewrites from the run's job definition
  when the run is submitted;
- the run guard (`wait_for_slot`, called by run_executor.GuardedExecutor before any step runs, with the
  `limits` of the clusters the run executes): `dagster job execute`, `exo run` and asset-selection runs
  never pass through the queue.

The guard's slots are claims (run tag `exo/slot`) that only the run's own guard can write: a claim names
its run and the run's start time in the instance, which a launcher cannot know when it sets the tags, so
a launcher's claim (or a retry's copy of its parent's) never counts. A claim holds the clusters, a ticket
and the process that holds it (host, pid, the process's start). Tickets follow Lamport's bakery
algorithm for N slots: mark the claim "choosing", take a ticket above every ticket seen, then wait until
no run of the same clusters is still choosing and fewer than N running runs hold a smaller (ticket, run
id). Safe under any interleaving of the instance's reads and writes, with no clock; the smallest ticket
always proceeds, so no deadlock.

A claim counts while its run is STARTED or CANCELING and its process lives. A claim made on this machine
whose process is gone (SIGKILL, OOM kill) is released and its run reported failed (canceled if it was
being canceled), as Dagster's run monitoring does for run workers; a claim from another machine counts
until its run ends in the instance (run monitoring, the cluster's `sla:`).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg

from exo_dagster.errors import ExoError
from exo_dagster.keys import CONCURRENCY_TAG, SLOT_TAG
from exo_dagster.sdk.hashing import short_hash

POLL_SECONDS = 1.0
CHOOSING_POLL_SECONDS = 0.05  # another run is between its two writes: a few milliseconds
REPORT_EVERY_SECONDS = 60.0
RUNNING = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
CANCELLED = {dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED}
_MAX_PID = 1 << 31
_MAX_CLAIM = 4096


def concurrency_tag(limit: int, identifier: str) -> str:
    """The tag value: the limit travels with it, so the run queue needs no code location to read it."""
    return f"{limit}:{identifier}"


def parse_tag(value: str) -> tuple[int, str] | None:
    """(limit, cluster identifier) of a tag value; None for one exo did not write."""
    limit, _, identifier = value.partition(":")
    try:
        number = int(limit)
    except ValueError:
        return None
    return (number, identifier) if number >= 1 and identifier else None


def limits(clusters: Iterable) -> dict[str, int]:
    """Cluster identifier -> `concurrency:`, from the clusters' definitions (ir.Cluster)."""
    return {c.spec.identifier: c.spec.concurrency for c in clusters if c.spec.concurrency is not None}


def strictest(values: Iterable[str | None]) -> str | None:
    """One `exo/concurrency` value for a run of several clusters: the smallest limit (then identifier)."""
    parsed = [p for v in values if v and (p := parse_tag(v)) is not None]
    return concurrency_tag(*min(parsed)) if parsed else None


def definition_tag(clusters: Iterable) -> str | None:
    """The `exo/concurrency` value the clusters' definitions give a run of them."""
    return strictest(concurrency_tag(n, k) for k, n in limits(clusters).items())


def corrected(tags: Mapping[str, str], value: str | None) -> dict[str, str]:
    """The tag to write so that a run carries `value` (the definition's), whatever a launcher set;
    an empty value voids a launcher's tag on a run whose clusters have no limit."""
    current = tags.get(CONCURRENCY_TAG)
    if value is not None:
        return {CONCURRENCY_TAG: value} if current != value else {}
    return {CONCURRENCY_TAG: ""} if current else {}


class SlotWaitCancelled(ExoError):
    """The run was cancelled while it waited for a slot."""


@functools.lru_cache(maxsize=1)
def machine() -> str:
    """Where a pid names the same process: the host name plus its boot and pid namespace (containers
    sharing a host name or a kernel do not share pids)."""
    marks = []
    for read in (
        lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        lambda: os.readlink("/proc/self/ns/pid"),
    ):
        try:
            marks.append(read())
        except OSError:
            marks.append("")
    return f"{socket.gethostname()}/{short_hash('|'.join(marks), 12)}"


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process, from /proc; None where it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_start(pid: int) -> str | None:
    """What tells this process from a later one given the same pid (None without /proc)."""
    stat = _stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int, since: str | None) -> bool:
    """False only when the process is provably gone: no such pid, a zombie, or a pid reused since."""
    if os.name == "nt":  # os.kill(pid, 0) would end it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    stat = _stat(pid)
    if stat is None:  # no /proc, or one that hides other users' processes: the pid exists
        return True
    state, start = stat
    return state not in ("Z", "X") and (since is None or start == since)


@dataclass(frozen=True)
class Claim:
    """A run's claim on a slot of each of `clusters`; `ticket` None while it is choosing one. `started` is the
    run's start time in the instance: a launcher cannot know it when it sets the run's tags, so a claim it
    wrote never counts (nor gets its run ended)."""

    run_id: str
    started: float | None
    clusters: tuple[str, ...]
    ticket: int | None
    host: str
    pid: int
    since: str | None

    def value(self) -> str:
        data = {
            "run": self.run_id,
            "started": self.started,
            "clusters": list(self.clusters),
            "ticket": self.ticket,
            "host": self.host,
            "pid": self.pid,
            "since": self.since,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def of(cls, record: dg.RunRecord) -> Claim | None:
        """The run's claim; None when absent, malformed, or not made by this run's guard (a launcher's tag,
        a retry's copy of its parent's)."""
        run = record.dagster_run
        raw = run.tags.get(SLOT_TAG) or "null"
        try:
            if len(raw) > _MAX_CLAIM:  # a launcher's tag: never parse a bomb
                return None
            data = json.loads(raw)
            claim = cls(
                data["run"],
                data["started"],
                tuple(data["clusters"]),
                data["ticket"],
                data["host"],
                data["pid"],
                data["since"],
            )
        except (ValueError, TypeError, KeyError, RecursionError):
            return None
        valid = (
            claim.run_id == run.run_id
            and claim.started == record.start_time
            and all(isinstance(c, str) for c in claim.clusters)
            and isinstance(claim.host, str)
            and (claim.ticket is None or (type(claim.ticket) is int and 0 <= claim.ticket < _MAX_PID))
            and type(claim.pid) is int
            and 0 < claim.pid < _MAX_PID
            and (claim.since is None or isinstance(claim.since, str))
        )
        return claim if valid else None

    def alive(self) -> bool:
        """Whether its process may still run: always, for a claim made on another machine."""
        return self.host != machine() or process_alive(self.pid, self.since)

    def order(self) -> tuple[int, str]:
        return (self.ticket if self.ticket is not None else _MAX_PID, self.run_id)


def claims(instance: dg.DagsterInstance, but: str | None = None) -> list[Claim]:
    """The live claims of running runs (not `but`'s); dead holders on this machine are released on the way."""
    found = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=RUNNING)):
        claim = Claim.of(record) if record.dagster_run.run_id != but else None
        if claim is None:
            continue
        if claim.alive():
            found.append(claim)
        else:
            _release(instance, claim)
    return found


def release_dead(instance: dg.DagsterInstance) -> None:
    """End the runs whose slot holder on this machine is gone (the run queue calls it at each iteration)."""
    claims(instance)


def _release(instance: dg.DagsterInstance, claim: Claim) -> None:
    record = instance.get_run_record_by_id(claim.run_id)
    if record is None or record.dagster_run.status not in RUNNING or Claim.of(record) != claim:  # ended meanwhile
        return
    run = record.dagster_run
    message = (
        f"exo: the process running this run (pid {claim.pid} on {claim.host.split('/')[0]}) is gone; "
        f"its slot of {', '.join(f'cluster/{c}' for c in claim.clusters)} is released"
    )
    if run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message=message)
    else:
        instance.report_run_failed(run, message=message)


def wait_for_slot(
    instance: dg.DagsterInstance, run_id: str, limits: Mapping[str, int], sleep: Callable[[float], None] = time.sleep
) -> Iterator[str]:
    """Return once the run holds a slot of each cluster in `limits` (identifier -> its definition's
    `concurrency:`); yield a message to log whenever it (still) waits. Raise SlotWaitCancelled when the
    run is cancelled meanwhile. The claim stays on the run: it counts until the run ends."""
    if not limits:
        return
    pid = os.getpid()
    record = instance.get_run_record_by_id(run_id)
    started = record.start_time if record is not None else None
    me = Claim(run_id, started, tuple(sorted(limits)), None, machine(), pid, process_start(pid))
    instance.add_run_tags(run_id, {SLOT_TAG: me.value()})  # choosing: others wait for its ticket
    me = replace(me, ticket=1 + max((c.ticket for c in claims(instance, run_id) if c.ticket is not None), default=0))
    instance.add_run_tags(run_id, {SLOT_TAG: me.value()})
    reported = 0.0
    while True:
        mine = [c for c in claims(instance, run_id) if set(c.clusters) & set(limits)]
        choosing = any(c.ticket is None for c in mine)
        ahead = [c for c in mine if c.order() < me.order()]
        full = {k: [c for c in ahead if k in c.clusters] for k in limits}
        full = {k: held for k, held in full.items() if len(held) >= limits[k]}
        run = instance.get_run_by_id(run_id)
        if run is not None and (run.status in CANCELLED or run.is_finished):  # also: ended by another process
            how = "cancelled" if run.status in CANCELLED else f"ended ({run.status.value})"
            clusters = ", ".join(f"cluster/{k}" for k in full or limits)
            raise SlotWaitCancelled(f"{how} while waiting for a slot of {clusters}")
        if not choosing and not full:
            return
        now = time.monotonic()
        if full and now - reported >= REPORT_EVERY_SECONDS:
            reported = now
            yield "; ".join(
                f"waiting for a slot ({len(held)} of cluster/{k} running, `concurrency: {limits[k]}`): "
                f"{', '.join(c.run_id[:8] for c in held)}"
                for k, held in full.items()
            )
        sleep(POLL_SECONDS if full else CHOOSING_POLL_SECONDS)
