"""A consumer's L2 book built only from emitted events, for checking the feed against other sources."""

from __future__ import annotations

from common.events import BookDelta, BookSnapshot, GapDeclared, unpack_levels


class EventBook:
    """A consumer's book built only from the emitted events (independent of the normalizer's own)."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.last_id = -1

    def on(self, body: object) -> None:
        if isinstance(body, BookSnapshot):
            self.bids = {p: q for p, q in unpack_levels(body.bids).tolist()}
            self.asks = {p: q for p, q in unpack_levels(body.asks).tolist()}
            self.last_id = body.update_id
        elif isinstance(body, BookDelta):
            assert body.first_id <= self.last_id + 1 <= body.last_id, "delta ids must continue the book"
            for side, buf in ((self.bids, body.bids), (self.asks, body.asks)):
                for p, q in unpack_levels(buf).tolist():
                    if q:
                        side[p] = q
                    else:
                        side.pop(p, None)
            self.last_id = body.last_id
        elif isinstance(body, GapDeclared):
            self.bids, self.asks, self.last_id = {}, {}, -1

    def touch(self) -> tuple[int, int, int, int]:
        bb, ba = max(self.bids), min(self.asks)
        return bb, self.bids[bb], ba, self.asks[ba]
