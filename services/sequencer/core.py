"""The sequencer's pure core: accept, deduplicate, stamp. No sockets, no clock.

State is the epoch, the next global seq, the Lamport clock and, per source,
the last source seq accepted. A source's events are accepted strictly in
order: at or below the last accepted is a duplicate (a re-send), more than
one above it means something in between was lost in flight, so it is refused
too and the producer's re-send brings the missing ones in order. That is what
lets a producer treat one confirmation as confirming everything before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common import events

SOURCE = "sequencer"


@dataclass
class SequencerCore:
    epoch: int = 1
    last_seq: int = 0
    lamport: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(
        default_factory=lambda: {"accepted": 0, "duplicates": 0, "out_of_order": 0, "malformed": 0}
    )

    def restore(self, last_seq: int, last_epoch: int, lamport: int, sources: dict[str, int]) -> None:
        """Resume after the journal's last record, in a new epoch."""
        self.last_seq = last_seq
        self.epoch = last_epoch + 1
        self.lamport = lamport
        self.sources = dict(sources)

    def offer(self, frame: bytes, recv_ns: int) -> bytes | None:
        """One ingest frame in; its encoded Sequenced event out, or None if refused.

        Raises FrameError for a frame that does not decode.
        """
        try:
            ing = events.decode_ingest(frame)
        except events.FrameError:
            self.counters["malformed"] += 1
            raise
        if ing.source == SOURCE:
            self.counters["malformed"] += 1
            raise events.FrameError(f"source name {SOURCE!r} is reserved for the sequencer", frame)
        last = self.sources.get(ing.source, 0)
        if ing.source_seq <= last:
            self.counters["duplicates"] += 1
            return None
        if ing.source_seq != last + 1:
            self.counters["out_of_order"] += 1
            return None
        self.sources[ing.source] = ing.source_seq
        self.counters["accepted"] += 1
        return self._stamp(ing.source, ing.source_seq, ing.lamport, ing.key, ing.event_ns, recv_ns, ing.body)

    def own(self, body: events._Body, now_ns: int) -> bytes:
        """An event the sequencer itself emits (epoch, clock, heartbeat)."""
        src_seq = self.sources.get(SOURCE, 0) + 1
        self.sources[SOURCE] = src_seq
        return self._stamp(SOURCE, src_seq, 0, f"{SOURCE}:{self.epoch}:{src_seq}", now_ns, now_ns, body)

    def epoch_event(self, now_ns: int) -> bytes:
        # The table is captured before this event takes its own source seq, so
        # it says exactly what the previous run accepted.
        table = dict(self.sources)
        return self.own(events.SequencerEpoch(self.epoch, self.last_seq + 1, table), now_ns)

    def _stamp(
        self, source: str, source_seq: int, lamport: int, key: str, event_ns: int, recv_ns: int, body: events._Body
    ) -> bytes:
        self.last_seq += 1
        self.lamport = max(self.lamport, lamport) + 1
        return events.encode(
            events.Sequenced(
                events.CODEC_VERSION,
                self.last_seq,
                self.epoch,
                self.lamport,
                source,
                source_seq,
                key,
                event_ns,
                recv_ns,
                body,
            )
        )
