"""The state machine: every committed log entry is applied here, in order.

``apply`` is deterministic and never raises for a bad command: a command that
cannot apply (it raced with another one) yields an :class:`Outcome` with an
error name from :data:`node.errors.APPLY_ERRORS`, identical on every replica.
An entry that is not a readable command, or whose handler fails unexpectedly
(a bug: the service should have refused it), yields an ``ApplyFailed``
outcome; the library mutations leave no trace when they fail. Only entries
out of order (or memory running out, which differs between nodes) raise.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import indexes
from node import commands as cmd
from node.store import views
from node.store.library import IF_INDEX, Library, Rejected
from node.store.records import CreationOrder, LibraryInfo, OrderKey
from node.store.remembered import RememberedOutcome, RememberedRequests
from replication.membership import Configuration, decode_configuration
from wal import EntryKind, LogEntry

log = logging.getLogger("shoal.state")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")


@dataclass(frozen=True, slots=True)
class Outcome:
    value: Any = None
    error: str | None = None
    detail: str | None = None


def _apply_failed(index: int, what: str, exc: Exception) -> Outcome:
    """The ``ApplyFailed`` outcome of entry ``index``, and an ERROR in the log.

    Its detail comes from the exception's type and the first line of its
    message, addresses removed, so every replica records the same words.
    """
    log.error("entry %d could not be applied: %s", index, what, exc_info=exc)
    message = _ADDRESS.sub("0x...", str(exc).strip().split("\n", 1)[0])[:300]
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return Outcome(
        error="ApplyFailed",
        detail=f"the write was logged but could not be applied, so it changed nothing "
        f"({what}: {reason}); this is a bug in the node, its log has the details",
    )


class StateMachine:
    def __init__(self) -> None:
        self.libraries: dict[str, Library] = {}
        self.library_order = CreationOrder()
        self.names: dict[str, str] = {}
        self.catalog_lock = threading.Lock()
        self.applied_index = 0
        self.applied_term = 0
        # The outcomes of recent keyed writes, by Idempotency-Key.
        self.requests = RememberedRequests()
        # The newest member list applied (log index, list), if any: snapshots
        # carry it, so a node that installs one knows the members then.
        self.configuration: tuple[int, Configuration] | None = None
        # Each handler takes (command, index of its log entry, whether a view is wanted).
        self._handlers: dict[type[cmd.Command], Callable[[Any, int, bool], Any]] = {
            cmd.CreateLibrary: self._create_library,
            cmd.UpdateLibrary: self._update_library,
            cmd.DeleteLibrary: self._delete_library,
            cmd.AddDocument: self._add_document,
            cmd.UpdateDocument: self._update_document,
            cmd.DeleteDocument: self._delete_document,
            cmd.AddChunks: self._add_chunks,
            cmd.UpdateChunk: self._update_chunk,
            cmd.DeleteChunk: self._delete_chunk,
        }

    def adopt(self, other: StateMachine) -> None:
        """Take over ``other``'s whole state (a snapshot built aside).

        Readers see the old catalog or the new one, never a half-filled one:
        each of these is one reference, swapped under the catalog lock.
        """
        with self.catalog_lock:
            self.libraries = other.libraries
            self.library_order = other.library_order
            self.names = other.names
            self.requests = other.requests
            self.configuration = other.configuration
            self.applied_index, self.applied_term = other.applied_index, other.applied_term

    # ------------------------------------------------------------ applying
    def apply(self, entry: LogEntry, want_result: bool = True) -> Outcome:
        """Apply one committed entry. ``want_result`` False skips building views."""
        if entry.index != self.applied_index + 1:
            raise RuntimeError(f"entry {entry.index} applied after {self.applied_index}")
        outcome = Outcome()
        if entry.kind is EntryKind.COMMAND:
            outcome = self._apply_command(entry, want_result)
        elif entry.kind is EntryKind.CONFIG:
            self.configuration = (entry.index, decode_configuration(entry.payload))
        self.applied_index, self.applied_term = entry.index, entry.term
        return outcome

    def _apply_command(self, entry: LogEntry, want_result: bool) -> Outcome:
        try:
            command, key, fingerprint = cmd.decode_keyed(entry.payload)
        except Exception as exc:
            return _apply_failed(entry.index, "the log entry is not a command this node reads", exc)
        remembered = self.remembered(key, fingerprint) if key is not None else None
        if remembered is not None:
            # A retry that reached the log: not again. Another request under
            # a used key (two raced past the service's check): refused.
            return remembered[1]
        want = want_result or key is not None
        try:
            outcome = Outcome(value=self._handlers[type(command)](command, entry.index, want))
        except Rejected as rejected:
            outcome = Outcome(error=rejected.error, detail=rejected.detail)
        except MemoryError:
            raise  # not the same on every node: stop rather than diverge
        except Exception as exc:
            outcome = _apply_failed(entry.index, f"the {command.op} command failed", exc)
        if key is not None:
            self.remember(key, entry.index, outcome, fingerprint)
        return outcome

    def remember(
        self, key: str, index: int, outcome: Outcome, fingerprint: str | None = None
    ) -> None:
        remembered = RememberedOutcome.of(
            index, outcome.error, outcome.detail, outcome.value, fingerprint
        )
        self.requests.remember(key, remembered)

    def remembered(self, key: str, fingerprint: str | None = None) -> tuple[int, Outcome] | None:
        """(log index, outcome) of the keyed write ``key``, if still remembered;
        for a request with another ``fingerprint``, an IdempotencyKeyReused
        outcome instead of the first one's.

        Safe on any thread.
        """
        found = self.requests.get(key)
        if found is None:
            return None
        if not found.answers(fingerprint):
            return found.index, Outcome(error="IdempotencyKeyReused", detail=_reused(found.index))
        return found.index, Outcome(found.value(), found.error, found.detail)

    def _library(self, library_id: str) -> Library:
        library = self.libraries.get(library_id)
        if library is None:
            raise Rejected("NotFound", f"library {library_id} does not exist")
        return library

    @contextmanager
    def _writing(self, library_id: str) -> Iterator[Library]:
        library = self._library(library_id)
        with library.lock.write():
            yield library

    def _create_library(self, command: cmd.CreateLibrary, entry_index: int, want: bool) -> Any:
        if command.name in self.names:
            raise Rejected("Conflict", f"a library named {command.name!r} already exists")
        if command.library_id in self.libraries:
            raise Rejected("Conflict", f"library {command.library_id} already exists")
        info = LibraryInfo(
            id=command.library_id,
            name=command.name,
            description=command.description,
            dimension=command.dimension,
            metric=command.metric,
            index_type=command.index_type,
            index_params=dict(command.index_params),
            embedding_model=command.embedding_model,
            created_at=command.created_at,
            updated_at=command.created_at,
            created_index=entry_index,
        )
        try:
            library = Library(info)
        except (ValueError, TypeError, indexes.UnknownIndexKind) as exc:
            raise Rejected("InvalidRequest", f"cannot build the index: {exc}") from None
        self.add_library(library)
        return views.library_view(library) if want else None

    def add_library(self, library: Library) -> None:
        with self.catalog_lock:
            self.libraries[library.info.id] = library
            self.library_order.add(library.info.id, library.info.created_index)
            self.names[library.info.name] = library.info.id

    def _update_library(self, command: cmd.UpdateLibrary, entry_index: int, want: bool) -> Any:
        new_name = command.changes.get("name")
        library = self._library(command.library_id)
        # Only the applier changes state, so what is checked here holds until
        # the swap below; readers may hold the library meanwhile.
        if new_name is not None and self.names.get(new_name, library.info.id) != library.info.id:
            raise Rejected("Conflict", f"a library named {new_name!r} already exists")
        changes = dict(command.changes)
        seen = changes.pop(IF_INDEX, None)
        if seen is not None and list(seen) != [library.info.index_type, library.info.index_params]:
            raise Rejected(
                "Conflict",
                f"library {library.info.id}'s index was changed by another write after this one "
                "was checked; send the change again",
            )
        index_type = changes.pop("index_type", library.info.index_type)
        index_params = changes.pop("index_params", library.info.index_params)
        rebuild = (index_type, index_params) != (library.info.index_type, library.info.index_params)
        built = None
        if rebuild:
            try:
                with library.lock.read():  # searches go on while the new index is built
                    built = library.build_index(index_type, index_params)
            except (ValueError, TypeError) as exc:
                raise Rejected("InvalidRequest", f"cannot build the index: {exc}") from None
        with library.lock.write():
            if rebuild:
                library.swap_index(built, index_type, index_params)
            with self.catalog_lock:
                if new_name is not None:
                    del self.names[library.info.name]
                    self.names[new_name] = library.info.id
                for name, value in changes.items():
                    setattr(library.info, name, value)
                library.info.updated_at = command.updated_at
            return views.library_view(library) if want else None

    def _delete_library(self, command: cmd.DeleteLibrary, entry_index: int, want: bool) -> Any:
        with self._writing(command.library_id) as library, self.catalog_lock:
            del self.libraries[library.info.id]
            self.library_order.remove(library.info.id, library.info.created_index)
            del self.names[library.info.name]
        return None

    def _add_document(self, command: cmd.AddDocument, entry_index: int, want: bool) -> Any:
        with self._writing(command.library_id) as library:
            record = library.add_document(command, entry_index)
            return views.document_view(library, record) if want else None

    def _update_document(self, command: cmd.UpdateDocument, entry_index: int, want: bool) -> Any:
        with self._writing(command.library_id) as library:
            record = library.update_document(command)
            return views.document_view(library, record) if want else None

    def _delete_document(self, command: cmd.DeleteDocument, entry_index: int, want: bool) -> Any:
        with self._writing(command.library_id) as library:
            library.delete_document(command.document_id)
        return None

    def _add_chunks(self, command: cmd.AddChunks, entry_index: int, want: bool) -> Any:
        with self._writing(command.library_id) as library:
            created = library.add_chunks(command)
            if not want:
                return None
            return [views.chunk_view(library, chunk, False) for chunk in created]

    def _update_chunk(self, command: cmd.UpdateChunk, entry_index: int, want: bool) -> Any:
        with self._writing(command.library_id) as library:
            chunk = library.update_chunk(command)
            return views.chunk_view(library, chunk, False) if want else None

    def _delete_chunk(self, command: cmd.DeleteChunk, entry_index: int, want: bool) -> Any:
        with self._writing(command.library_id) as library:
            library.delete_chunk(command.chunk_id)
        return None

    # --------------------------------------------------------------- reads
    def library(self, library_id: str) -> Library | None:
        return self.libraries.get(library_id)

    def library_page(
        self, after: OrderKey | None, limit: int
    ) -> tuple[list[tuple[OrderKey, Library]], bool]:
        """Libraries in the order the log created them, each with its place."""
        with self.catalog_lock:
            keys, more = self.library_order.page(after, limit)
            return [(key, self.libraries[key[1]]) for key in keys], more

    def library_key(self, library_id: str) -> OrderKey | None:
        """The place of a library in listings, if it exists."""
        library = self.libraries.get(library_id)
        return None if library is None else (library.info.created_index, library_id)

    def library_id_by_name(self, name: str) -> str | None:
        return self.names.get(name)


def _reused(index: int) -> str:
    return (
        f"this Idempotency-Key was already used, at log index {index}, for a different request "
        "(another method, path or body); nothing was applied. Send a new write with a new key"
    )
