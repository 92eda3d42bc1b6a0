"""Delivering transitions: at least once, with a dedup key, after the commit.

The notifier of shard *p* reads the outbox of every commit of partition *p*
of ``_monitor_transitions`` in version order and delivers each transition
that should notify to the sinks its definition named when it was committed:

- ``webhook:<url>``: an HTTP POST of the transition as JSON, with the
  ``Idempotency-Key`` header ``<monitor>/<group>/<seq>``; a 2xx reply is the
  acknowledgement;
- ``file:<path>``: one JSON line appended and fsynced (the key is in the line).

A sink that fails is retried with exponential backoff; nothing after it is
delivered until it succeeds (per shard, in order).  Progress (the last
version fully delivered, and the groups still alerting for renotification)
is committed to ``<namespace>/_monitors/deliveries`` *after* the receivers
acknowledged, so a notifier killed in between delivers again, with the same
keys.  The notifier owns its shard's delivery log under an epoch, so a
replaced notifier cannot move the progress back.  Renotifications of a
group still alerting carry the key ``<monitor>/<group>/<seq>/r<n>``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from engine.monitors.definition import Mute
from engine.monitors.history import read_outbox
from engine.monitors.state import NOTIFYING
from storage.log import PartitionLog, PartitionState
from storage.monitor_log import MONITORS_FOLDER
from storage.objectstore import ObjectStore

RETRIES_PER_ROUND = 3
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 10.0
LIST_EVERY = 5.0  # seconds between listings of the outbox log (the next commit is probed for at every step)


def payload(entry: dict[str, Any], renotify: int = 0) -> dict[str, Any]:
    """What a sink receives for an outbox entry."""
    key = entry["key"] if not renotify else f"{entry['key']}/r{renotify}"
    return {
        "key": key,
        "monitor": entry["monitor"],
        "group": json.loads(entry["group"]),
        "seq": entry["seq"],
        "slot": dt.datetime.fromtimestamp(entry["slot"], dt.timezone.utc).isoformat(),
        "from": entry["from_state"],
        "to": entry["to_state"],
        "value": entry["value"],
        "reason": entry["reason"],
        "renotify": renotify,
    }


class Sinks:
    """Sends one payload to one target; True when the receiver acknowledged it."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.client = httpx.Client(timeout=timeout)

    def send(self, target: str, body: dict[str, Any]) -> bool:
        scheme, address = target.split(":", 1)
        try:
            if scheme == "webhook":
                reply = self.client.post(address, json=body, headers={"Idempotency-Key": body["key"]})
                return 200 <= reply.status_code < 300
            if scheme == "file":
                os.makedirs(os.path.dirname(os.path.abspath(address)), exist_ok=True)
                with open(address, "a") as handle:
                    handle.write(json.dumps(body, sort_keys=True) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                return True
        except (httpx.HTTPError, OSError):
            return False
        return False

    def close(self) -> None:
        self.client.close()


@dataclass
class DeliveryStats:
    delivered: int = 0
    renotified: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)


class Notifier:
    """Delivers the outbox of one shard."""

    def __init__(self, store: ObjectStore, namespace: str, transitions_path: str, shard: int,
                 sinks: Sinks | None = None, clock: Callable[[], float] = time.time) -> None:
        self.outbox_log = PartitionLog(store, transitions_path, shard)
        self.log = PartitionLog(store, f"{namespace}/{MONITORS_FOLDER}/deliveries", shard)
        self.sinks = sinks or Sinks()
        self.clock = clock
        self.stats = DeliveryStats()
        self.state: PartitionState = self.log.claim()
        self.watermark = int(self.state.offsets.get("watermark", -1))
        self.alerting: dict[str, dict[str, Any]] = dict(self.state.offsets.get("alerting") or {})
        self.backoff = 0.0
        self.retry_at = 0.0
        self.listed_latest = -1  # the latest outbox version the last listing showed, and when it was taken
        self.listed_at = float("-inf")

    def _deliver(self, entry: dict[str, Any], renotify: int = 0) -> bool:
        body = payload(entry, renotify)
        for target in entry.get("sinks") or ():
            delay = FIRST_BACKOFF
            for attempt in range(RETRIES_PER_ROUND):
                if self.sinks.send(target, body):
                    break
                self.stats.failures += 1
                if attempt + 1 < RETRIES_PER_ROUND:
                    time.sleep(delay)
                    delay *= 2
            else:
                return False
        self.stats.delivered += 1
        committed = entry.get("committed_at")
        if committed:
            self.stats.latencies.append(self.clock() - committed)
        return True

    def step(self, mutes: Callable[[str], tuple[Mute, ...]] | None = None,
             renotify_after: Callable[[str], float | None] | None = None) -> int:
        """Deliver what is pending (and renotify what is due); returns how many deliveries were acknowledged.

        ``mutes(monitor)`` and ``renotify_after(monitor)`` give the current
        definition's mutes and renotify period (renotification only).
        """
        now = self.clock()
        if now < self.retry_at:
            return 0
        done = 0
        changed = False
        failed = False
        version = self.watermark
        while True:
            version += 1
            entries = self._outbox(version, now)
            if entries is None:
                break
            for entry in entries:
                if entry.get("notify") and not self._deliver(entry):
                    failed = True
                    break
                done += bool(entry.get("notify"))
            if failed:
                break
            for entry in entries:
                alert_key = f"{entry['monitor']}\n{entry['group']}"
                if entry["to_state"] in NOTIFYING and entry.get("notify"):
                    self.alerting[alert_key] = {"entry": entry, "sent": now, "count": 0}
                else:
                    self.alerting.pop(alert_key, None)
            self.watermark = version
            changed = True
        if not failed and renotify_after is not None:
            for alert_key, item in list(self.alerting.items()):
                entry = item["entry"]
                period = renotify_after(entry["monitor"])
                if period is None or now - item["sent"] < period:
                    continue
                group = json.loads(entry["group"])
                if mutes is not None and any(m.covers(group, now) for m in mutes(entry["monitor"])):
                    continue
                if not self._deliver(entry, renotify=item["count"] + 1):
                    failed = True
                    break
                self.alerting[alert_key] = {**item, "sent": now, "count": item["count"] + 1}
                self.stats.renotified += 1
                changed = True
        if changed:
            self.state = self.log.commit(self.state, epoch=self.state.epoch, kind="delivery",
                                         offsets={"watermark": self.watermark, "alerting": self.alerting})
        if failed:
            self.backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, self.backoff * 2))
            self.retry_at = self.clock() + self.backoff
        else:
            self.backoff = 0.0
        return done

    def _outbox(self, version: int, now: float) -> list[dict[str, Any]] | None:
        """The outbox of ``version``, or None if it is not committed yet.

        The next version is read straight away: listing the log at every
        step costs more than the commits read, the more so as the log grows.
        A version that is not there is either still to come or folded into
        a checkpoint by vacuum (nothing left to deliver); a listing, taken
        at most every LIST_EVERY seconds, tells which.
        """
        try:
            return read_outbox(self.outbox_log, version)
        except FileNotFoundError:
            pass
        if version <= self.listed_latest:  # listed before this read missed it: vacuum took it since
            return []
        if now - self.listed_at < LIST_EVERY:
            return None
        commits, checkpoints = self.outbox_log.versions()
        self.listed_latest = max(commits[-1] if commits else -1, checkpoints[-1] if checkpoints else -1)
        self.listed_at = now
        if version > self.listed_latest:
            return None
        try:  # committed between the read and the listing, or folded away: read again to tell
            return read_outbox(self.outbox_log, version)
        except FileNotFoundError:
            return []
