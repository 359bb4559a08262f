"""List cursors: where the previous page ended.

``next_cursor`` is ``"<index>.<id>"``: the place of the last item returned
(the log index that created it) and its id. It carries the place itself, so
it still works after that item is deleted. For clients written against the
earlier form, the id of an item still listed is accepted as well.
"""

from __future__ import annotations

from collections.abc import Callable

from node.errors import InvalidRequest
from node.store.records import OrderKey


def encode(key: OrderKey) -> str:
    created_index, item = key
    return f"{created_index}.{item}"


def decode(
    cursor: str | None, key_of_item: Callable[[str], OrderKey | None], what: str
) -> OrderKey | None:
    """The place a page starts after (None: the start); 422 for a cursor that
    names no place."""
    if not cursor:
        return None
    listed = key_of_item(cursor)
    if listed is not None:
        return listed
    index, dot, item = cursor.partition(".")
    if dot and item and index.isdigit() and index.isascii():
        return int(index), item
    raise InvalidRequest(
        f"cursor {cursor!r} is neither a next_cursor from this list nor the id of a {what} "
        f"in it (the id of a deleted {what} cannot serve as a cursor); pass the next_cursor "
        "of the previous page"
    )
