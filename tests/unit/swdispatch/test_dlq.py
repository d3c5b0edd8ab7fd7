"""``swdispatch dlq``'s choices that need no broker: what is replayed, what is printed."""

from __future__ import annotations

from shared import topics
from shared.settings import KafkaSettings
from swdispatch.dlq import DeadLetter, Selection, printable, replay

DLQ = topics.dead_letter(topics.CENTER_EVENTS)


def _letter(offset: int, reason: str = "handler_failed", original: int | None = 7) -> DeadLetter:
    headers = {"swd-dlq-reason": reason}
    if original is not None:
        headers |= {
            "swd-original-topic": topics.CENTER_EVENTS,
            "swd-original-partition": "2",
            "swd-original-offset": str(original),
        }
    return DeadLetter(DLQ, 0, offset, 0, b"k", b"{}", headers)


async def test_a_message_is_replayed_once_and_a_cut_or_unplaceable_one_never() -> None:
    letters = [
        _letter(0),
        _letter(1),  # the same message, dead-lettered by a second consumer
        _letter(2, "oversized", original=8),
        _letter(3, original=None),
        _letter(4, "not_json", original=9),
    ]
    chosen, skipped = await replay(KafkaSettings(), letters, dry_run=True)
    assert [d.offset for d in chosen] == [0, 4]
    assert [d.offset for d, _ in skipped] == [1, 2, 3]


def test_the_selection_filters_by_reason_and_offset_range() -> None:
    selection = Selection(reason="handler_failed", from_offset=1, to_offset=3)
    picked = [d.offset for d in map(_letter, range(6)) if selection.wants(d)]
    assert picked == [1, 2, 3]
    assert not selection.wants(_letter(2, "not_json"))


def test_control_characters_are_printed_as_escapes() -> None:
    hostile = "name\x1b[2J\x1b]0;owned\x07\x00\x9b\r\nend 张三"
    shown = printable(hostile)
    assert shown == "name\\x1b[2J\\x1b]0;owned\\x07\\x00\\x9b\\x0d\\x0aend 张三"
