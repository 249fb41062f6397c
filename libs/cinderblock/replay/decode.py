"""Stored rows → projection events without building domain event objects.

The same steps as eventsourcing's ``Mapper.to_domain_event`` (cipher, compressor,
transcoder, then the class's ``upcast_vN_vN+1`` static methods up to its ``class_version``),
minus the object: replay needs the event's fields as plain values, not the event. The
result equals what the live projector gets from ``event_data(mapper.to_domain_event(...))``
(``tests/unit/replay/test_decode.py``).

Fast path: events stored at their class's current version are parsed with ``json.loads``
and only the transcoded values (``{"_type_": …, "_data_": …}``) are turned into plain
values; events that need upcasting take the mapper's full path first.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent, find_id_convertor
from eventsourcing.utils import resolve_topic

from cinderblock.readmodels.quarantine import SetAside, retry_will_fix
from cinderblock.store.mapping import event_name, make_mapper, plain

# The JSON scanner without json.loads' encoding detection and whitespace regexes (the
# mapper writes compact UTF-8 JSON objects); orjson, when installed, parses twice as fast.
_scan = json.JSONDecoder().scan_once


def _std_loads(state: bytes) -> Any:
    return _scan(state.decode(), 0)[0]


try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; json is the fallback
    _loads = _std_loads
else:

    def _loads(state: bytes) -> Any:
        try:
            return orjson.loads(state)
        except orjson.JSONDecodeError:  # e.g. an integer beyond 64 bits: json handles it
            return _std_loads(state)


_ENVELOPE = ("originator_id", "originator_version", "originator_topic", "timestamp")


class Event:
    """A projection event (same attributes as ``projections.ProjectionEvent``), cheap to
    build: replay makes a million of them."""

    __slots__ = (
        "aggregate_id",
        "data",
        "name",
        "request_id",
        "request_project_id",
        "timestamp",
        "version",
    )

    def __init__(
        self,
        name: str,
        aggregate_id: UUID,
        version: int,
        timestamp: datetime,
        data: dict[str, Any],
        request_id: str | None = None,
        request_project_id: str | None = None,
    ) -> None:
        self.name = name
        self.aggregate_id = aggregate_id
        self.version = version
        self.timestamp = timestamp
        self.data = data
        self.request_id = request_id
        self.request_project_id = request_project_id


def _origin(event: Event, row: Sequence[Any]) -> Event:
    """``event`` with the request id and project a row carries after its state, if any."""
    if len(row) > 6:
        event.request_id, event.request_project_id = row[6], row[7]
    return event


class Decoder:
    def __init__(
        self, mapper: Mapper[UUID] | None = None, *, wanted: Collection[str] | None = None
    ) -> None:
        """``wanted``: event names worth decoding; others decode to None (replay skips
        events no projection reads, such as ``Volume.SnapshotTaken``)."""
        self.mapper = mapper or make_mapper()
        self.wanted = None if wanted is None else frozenset(wanted)
        self._classes: dict[str, tuple[str, type, int, bool]] = {}
        self._wrapped = bool(self.mapper.cipher or self.mapper.compressor)
        self._names = getattr(self.mapper.transcoder, "names", {})

    def _resolve(self, topic: str) -> tuple[str, type, int, bool]:
        cls = resolve_topic(topic)
        name = event_name(topic)
        wanted = self.wanted is None or name in self.wanted
        found = (name, cls, getattr(cls, "class_version", 1), wanted)
        self._classes[topic] = found
        return found

    def __call__(self, topic: str, originator_id: UUID, version: int, state: bytes) -> Event | None:
        name, cls, class_version, wanted = self._classes.get(topic) or self._resolve(topic)
        if not wanted:
            return None
        if self._wrapped:
            state = self._unwrap(state)
        return self._event(name, cls, class_version, originator_id, version, state, _loads(state))

    def _event(
        self,
        name: str,
        cls: type,
        class_version: int,
        originator_id: UUID,
        version: int,
        state: bytes,
        d: dict[str, Any],
    ) -> Event:
        """The projection event of a parsed state ``d`` (changed in place)."""
        if class_version > 1 and d.get("class_version", 1) < class_version:
            return self._upcast(name, cls, class_version, originator_id, version, state)
        d.pop("class_version", None)
        timestamp = datetime.fromisoformat(d.pop("timestamp")["_data_"])
        d.pop("originator_topic", None)  # Created events only
        if state.count(b'"_type_"') > 1:  # a transcoded value besides the timestamp
            for key, value in d.items():
                if type(value) is dict or type(value) is list:
                    d[key] = self._plain(value)
        return Event(name, originator_id, version, timestamp, d)

    def rows(
        self, rows: Sequence[Sequence[Any]], consumer: str
    ) -> tuple[list[Event], list[SetAside]]:
        """Log rows ``(tx_id, position, originator_id, originator_version, topic, state)``,
        optionally followed by the request id and project of their meta (``source``'s
        layout), as events (the wanted ones), and those that cannot be decoded as
        ``consumer``'s set-asides: decoding them again fails the same way."""
        try:
            decoded = [self(r[4], r[2], r[3], r[5]) for r in rows]
        except Exception:  # some row is bad: find it, one by one
            pass
        else:
            return [_origin(e, r) for e, r in zip(decoded, rows, strict=True) if e is not None], []
        events: list[Event] = []
        failed: list[SetAside] = []
        for r in rows:
            try:
                e = self(r[4], r[2], r[3], r[5])
            except Exception as err:
                self._set_aside(failed, consumer, r, err)
                continue
            if e is not None:
                events.append(_origin(e, r))
        return events, failed

    def with_domain(
        self, rows: Sequence[Sequence[Any]], consumer: str, prefix: str | tuple[str, ...]
    ) -> tuple[list[Event], list[SetAside], list[tuple[Sequence[Any], Any]]]:
        """What ``rows`` gives, and in the same pass over the rows the domain
        event of every row whose topic starts with ``prefix``, exactly as
        ``mapper.to_domain_event`` makes it, or the error decoding it raises: the usage
        ledger is a fold of domain events through the aggregate (replay/ledger.py)."""
        events: list[Event] = []
        failed: list[SetAside] = []
        domain: list[tuple[Sequence[Any], Any]] = []
        classes = self._classes
        for r in rows:
            topic = r[4]
            typed = topic.startswith(prefix)
            try:
                name, cls, class_version, wanted = classes.get(topic) or self._resolve(topic)
                d = None
                if wanted:
                    state = self._unwrap(r[5]) if self._wrapped else r[5]
                    d = _loads(state)
            except Exception as err:
                self._set_aside(failed, consumer, r, err)
                if typed:
                    domain.append((r, self._mapped(r)))
                continue
            if typed:
                try:
                    domain.append((r, self._domain(cls, class_version, r, d)))
                except Exception as err:
                    if retry_will_fix(err):
                        raise
                    domain.append((r, self._mapped(r)))
            if d is not None:
                try:
                    event = self._event(name, cls, class_version, r[2], r[3], state, d)
                except Exception as err:
                    self._set_aside(failed, consumer, r, err)
                else:
                    events.append(_origin(event, r))
        return events, failed, domain

    def _set_aside(
        self, failed: list[SetAside], consumer: str, r: Sequence[Any], err: Exception
    ) -> None:
        if retry_will_fix(err):
            raise err
        name = event_name(r[4])
        if self.wanted is None or name in self.wanted:
            failed.append(SetAside.failed(consumer, r[2], r[3], name, err, at=(r[0], r[1])))

    def _domain(
        self, cls: type, class_version: int, r: Sequence[Any], parsed: dict[str, Any] | None
    ) -> Any:
        """The domain event of row ``r``: the mapper's steps (transcoded values decoded,
        ``class_version`` dropped, the id and version set, the object made without
        ``__init__``) on its state parsed as fast as ``_loads`` parses. The aggregate may
        keep and change a dict or list an event gives it, so the event shares none with
        the projection event: ``parsed`` (the projection's parse, before ``_event``
        changes it) is copied only when the state holds no object or array but the
        timestamp, else the state is parsed again."""
        raw: bytes = r[5]
        if self._wrapped:
            return self.mapper.to_domain_event(StoredEvent(r[2], r[3], r[4], raw))
        # Only the timestamp is transcoded, and no other object or array: a '{' or '['
        # inside a string makes this false, never wrongly true.
        flat = raw.count(b'"_type_"') == 1 and raw.count(b"{") == 2 and b"[" not in raw
        state: dict[str, Any] = parsed.copy() if flat and parsed is not None else _loads(raw)
        if class_version > 1 and state.get("class_version", 1) < class_version:
            return self.mapper.to_domain_event(StoredEvent(r[2], r[3], r[4], raw))
        stamp = state.get("timestamp")
        if (
            flat
            and type(stamp) is dict
            and len(stamp) == 2
            and "_data_" in stamp
            and "_type_" in stamp
        ):
            state["timestamp"] = self._names[stamp["_type_"]].decode(stamp["_data_"])
        else:
            typed = self._typed
            for key, value in state.items():
                if type(value) is dict or type(value) is list:
                    state[key] = typed(value)
        state.pop("class_version", None)
        state["originator_id"] = find_id_convertor(cls, type(r[2]))(r[2])
        state["originator_version"] = r[3]
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

    def _typed(self, value: Any) -> Any:
        """A raw JSON value as the transcoder decodes it: each object, innermost first,
        through its transcoding when it is one (``{"_type_": …, "_data_": …}``)."""
        if type(value) is list:
            return [self._typed(v) for v in value]
        if type(value) is not dict:
            return value
        value = {k: self._typed(v) for k, v in value.items()}
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            return self._names[value["_type_"]].decode(value["_data_"])
        return value

    def _mapped(self, r: Sequence[Any]) -> Any:
        """The mapper's own result for a row the fast path could not decode: the same
        error (or, should the fast path be wrong, the event)."""
        try:
            return self.mapper.to_domain_event(StoredEvent(r[2], r[3], r[4], r[5]))
        except Exception as err:
            if retry_will_fix(err):
                raise
            return err

    def _unwrap(self, state: bytes) -> bytes:
        mapper = self.mapper
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        return state

    def _plain(self, value: Any) -> Any:
        """A raw JSON value with transcoded objects replaced by their plain form."""
        if type(value) is list:
            return [self._plain(v) for v in value]
        if type(value) is not dict:
            return value
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            kind, raw = value["_type_"], value["_data_"]
            if kind == "datetime_iso":
                return raw  # plain(datetime) is its isoformat(), which is what was stored
            if kind == "uuid_hex":
                return str(UUID(raw))
            return plain(self._names[kind].decode(raw))
        return {k: self._plain(v) for k, v in value.items()}

    def _upcast(
        self,
        name: str,
        cls: type,
        class_version: int,
        originator_id: UUID,
        version: int,
        state: bytes,
    ) -> Event:
        d: dict[str, Any] = self.mapper.transcoder.decode(state)
        d["originator_id"] = originator_id
        d["originator_version"] = version
        from_version = d.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(d)
            from_version += 1
        timestamp = d["timestamp"]
        data = {k: plain(v) for k, v in d.items() if k not in _ENVELOPE}
        return Event(name, originator_id, version, timestamp, data)
