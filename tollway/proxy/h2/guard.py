"""Abuse accounting for one HTTP/2 connection, with Envoy's limits and its answers.

Pure counters: the server feeds what it saw and sent, and a non-None return is the reason
to end the connection (GOAWAY, then close). The numbers are Envoy's defaults
(`Http2ProtocolOptions` and its premature-reset check), so a client Envoy tolerates is
tolerated here and a flood Envoy cuts is cut here:

- rapid reset (CVE-2023-44487): at least 500 streams opened and half or more of them reset
  by the client before their response finished;
- outbound control frames (SETTINGS/PING floods): more than 1000 acknowledgements and
  resets queued while the client does not read;
- more than 1 consecutive empty DATA frame, more than 100 PRIORITY frames per stream
  opened, WINDOW_UPDATEs out of proportion to the DATA frames sent.

CONTINUATION floods and HPACK bombs are refused by the connection itself (conn.py: 64
CONTINUATION frames per header block at most, PROTOCOL_ERROR; a header list decoding past
SETTINGS_MAX_HEADER_LIST_SIZE, ENHANCE_YOUR_CALM, raised mid-block by the HPACK decoder).
"""

from __future__ import annotations

PREMATURE_RESET_MIN_STREAMS = 500
MAX_OUTBOUND_CONTROL_FRAMES = 1000
MAX_CONSECUTIVE_EMPTY_FRAMES = 1
MAX_PRIORITY_PER_STREAM = 100
MAX_WINDOW_UPDATES_PER_DATA_SENT = 10


class Guard:
    """The counters Envoy keeps per HTTP/2 connection (see module doc)."""

    __slots__ = (
        "control_queued",
        "data_sent",
        "empty_run",
        "priority",
        "reset_early",
        "streams",
        "window_updates",
    )

    def __init__(self) -> None:
        self.streams = 0
        self.reset_early = 0
        self.control_queued = 0
        self.empty_run = 0
        self.priority = 0
        self.window_updates = 0
        self.data_sent = 0

    def stream_opened(self) -> None:
        self.streams += 1

    def stream_reset_by_client(self, answered: bool) -> str | None:
        """The client reset a stream; `answered`: its response had already finished."""
        if not answered:
            self.reset_early += 1
        return self._premature()

    def _premature(self) -> str | None:
        if self.streams >= PREMATURE_RESET_MIN_STREAMS and self.reset_early * 2 >= self.streams:
            return (f"too many streams reset before their response ({self.reset_early} of "
                    f"{self.streams}): rapid reset")
        return None

    def control_frame_queued(self, n: int = 1) -> str | None:
        """An ACK or RST_STREAM was queued while earlier output still waits."""
        self.control_queued += n
        if self.control_queued > MAX_OUTBOUND_CONTROL_FRAMES:
            return (f"more than {MAX_OUTBOUND_CONTROL_FRAMES} control frames queued for a "
                    "client that does not read them: SETTINGS/PING flood")
        return None

    def output_drained(self) -> None:
        """Everything written so far has left: the queued-control count starts again."""
        self.control_queued = 0

    def data_frame(self, empty: bool) -> str | None:
        if not empty:
            self.empty_run = 0
            return None
        self.empty_run += 1
        if self.empty_run > MAX_CONSECUTIVE_EMPTY_FRAMES:
            return "consecutive DATA frames with an empty payload"
        return None

    def other_frame(self) -> None:
        self.empty_run = 0

    def priority_frame(self) -> str | None:
        self.priority += 1
        if self.priority > MAX_PRIORITY_PER_STREAM * (1 + self.streams):
            return "too many PRIORITY frames"
        return None

    def data_sent_frames(self, n: int) -> None:
        self.data_sent += n

    def window_update(self) -> str | None:
        self.window_updates += 1
        limit = 5 + 2 * (self.streams + MAX_WINDOW_UPDATES_PER_DATA_SENT * self.data_sent)
        if self.window_updates > limit:
            return "too many WINDOW_UPDATE frames for the data sent"
        return None
