"""Rows read and written without the ORM's query machinery: one-row INSERTs and UPDATEs for
the serving hot path, and reads and writes of thousands of rows for a batch's ingest.

Model.save() builds a Query, compiles it and walks the model's fields and signals on every
call: on a realtime request that was most of the CPU its writes took (bench/profile.py), far
more than SQLite or PostgreSQL spent running them. These write the row the ORM would — every
value through its field's pre_save and get_db_prep_save, defaults from the model instance —
with the SQL built once per model. They send no signals: use them only for models nothing
listens to (llmops.memo watches the configuration models; those are saved by the ORM).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from uuid import UUID, SafeUUID

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.backends.sqlite3 import base as sqlite_backend  # (its operations: circular alone)
from django.db.models import Field, Model
from django.db.models.base import ModelState
from django.db.models.fields.json import JSONField
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

from llmops import fastjson, sqlite

# Fields whose value, when already of one of these types, reaches the database as it is: what
# their get_db_prep_save would return. Values of other types, and every other field (dates,
# JSON, money, UUIDs), go through the field.
_AS_IS_FIELDS = (models.CharField, models.TextField, models.IntegerField, models.BooleanField)
_AS_IS_TYPES = frozenset({str, int, bool, type(None)})


def _db():
    """This thread's default connection itself: `connection` is a proxy that looks it up in a
    thread-local on every attribute, and a field preparing a value reads several (a batch
    chunk's thousands of values: a twentieth of its Python)."""
    return connections[DEFAULT_DB_ALIAS]


def _as_is(field: Field) -> bool:
    if type(field).pre_save is not Field.pre_save:
        return False  # auto_now and the like
    if field.is_relation:
        return isinstance(field.target_field, models.IntegerField)
    return isinstance(field, _AS_IS_FIELDS)


def _values(
    obj: Model, fields: tuple[tuple[Field, bool], ...], add: bool, prep: Prepared | None = None
) -> list:
    values = []
    db = _db()
    for index, (field, as_is) in enumerate(fields):
        if as_is:
            value = getattr(obj, field.attname)
            if type(value) in _AS_IS_TYPES:
                values.append(value)
                continue
        value = field.pre_save(obj, add)
        values.append(prep(index, value) if prep is not None else field.get_db_prep_save(value, db))
    return values


@cache
def _insert(model: type[Model], vendor: str, conflict: str) -> tuple[tuple, str, bool]:
    meta = model._meta
    quote = connection.ops.quote_name
    # An auto-increment key is the database's to choose (RETURNING gives it back); a UUID
    # key is the instance's.
    generated = meta.pk.db_returning
    fields = tuple(f for f in meta.local_concrete_fields if not (generated and f.primary_key))
    # Identifiers from the model's metadata only; every value is a parameter.
    columns, marks = ", ".join(quote(f.column) for f in fields), ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608
    if conflict:
        sql += f" ON CONFLICT ({quote(meta.get_field(conflict).column)}) DO NOTHING"
    if generated:
        sql += f" RETURNING {quote(meta.pk.column)}"
    return tuple((f, _as_is(f)) for f in fields), sql, generated


def insert(obj: Model, *, unless_exists: str = "") -> bool:
    """INSERT `obj` as obj.save(force_insert=True) would, setting its generated key. With
    `unless_exists` (a unique field's name), a row already holding that value wins: nothing
    is written and False is returned — no IntegrityError, so no savepoint is needed."""
    fields, sql, generated = _insert(type(obj), connection.vendor, unless_exists)
    with connection.cursor() as cursor:
        cursor.execute(sql, _values(obj, fields, True))
        if generated:
            row = cursor.fetchone()
            if row is None:
                return False
            obj.pk = row[0]
        elif unless_exists and cursor.rowcount != 1:
            return False
    obj._state.adding, obj._state.db = False, connection.alias
    return True


@cache
def _update(model: type[Model], vendor: str, names: tuple[str, ...]) -> tuple[tuple, str]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = (
        tuple(meta.get_field(name) for name in names)
        if names
        else tuple(f for f in meta.local_concrete_fields if not f.primary_key)
    )
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    table, key = quote(meta.db_table), quote(meta.pk.column)
    sql = f"UPDATE {table} SET {assignments} WHERE {key} = %s"  # noqa: S608 (as in _insert)
    return tuple((f, _as_is(f)) for f in fields), sql


def update(obj: Model, fields: tuple[str, ...] = ()) -> int:
    """UPDATE `obj`'s row with its `fields` (every field, like obj.save(), when none are
    named): the number of rows changed (0 if the row is gone)."""
    columns, sql = _update(type(obj), connection.vendor, fields)
    params = _values(obj, columns, False)
    params.append(obj._meta.pk.get_db_prep_value(obj.pk, _db()))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _converters(model: type[Model], fields: tuple[Field, ...]) -> list[tuple]:
    """What the ORM's compiler applies to each column read back (the backend's, the field's)."""
    converters = []
    for field in fields:
        column = field.get_col(model._meta.db_table)
        convert = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        converters.append((column, [_faster(c) for c in convert]))
    return converters


def _faster(converter):
    """`converter`, or one that returns the same values faster."""
    if _plain_json(converter):
        return _json_read
    uuid_read = sqlite_backend.DatabaseOperations.convert_uuidfield_value
    if getattr(converter, "__func__", None) is uuid_read:
        return _uuid_read
    return converter


def _plain_json(converter) -> bool:
    """Whether `converter` is a JSONField's own from_db_value with json's decoder."""
    field = getattr(converter, "__self__", None)
    return (
        getattr(converter, "__func__", None) is JSONField.from_db_value
        and isinstance(field, JSONField)
        and field.decoder is None
    )


def _json_read(value, expression, connection):
    """JSONField.from_db_value for a column read whole (no key transform), through fastjson:
    the same value, faster (a batch chunk's 2,000 requests' params)."""
    if value is None:
        return value
    try:
        return fastjson.loads(value)
    except json.JSONDecodeError:  # as JSONField's: text that is no JSON is returned as it is
        return value


def _uuid_read(value, expression, connection):
    """SQLite's UUID converter (uuid.UUID(value)) for the 32 hexadecimal digits a UUIDField
    stores, without UUID.__init__'s parsing of every form a UUID is written in: the same UUID
    at a third of the cost (a batch chunk's requests and holds, three per result)."""
    if value is None:
        return None
    if len(value) != 32:
        return UUID(value)  # as the ORM reads it, or its error
    uuid = _new_object(UUID)
    _set_attribute(uuid, "int", int(value, 16))  # ValueError on a non-digit, as UUID's
    _set_attribute(uuid, "is_safe", SafeUUID.unknown)
    return uuid


_new_object, _set_attribute = object.__new__, object.__setattr__  # what UUID.__init__ uses


def _converted(converters: list[tuple], found) -> list[list]:
    """The rows `found` with each column through its converters (most columns have none:
    ids, text and numbers are read as they are)."""
    converting = [
        (index, column, convert) for index, (column, convert) in enumerate(converters) if convert
    ]
    converted = []
    db = _db()
    for row in found:
        values = list(row)
        for index, column, convert in converting:
            value_read = values[index]
            for converter in convert:
                value_read = converter(value_read, column, db)
            values[index] = value_read
        converted.append(values)
    return converted


def _instances(model: type[Model], fields, converters, found) -> list[Model]:
    """The rows `found` (of `fields`' columns, in order) as the ORM would build them."""
    names = [f.attname for f in fields]
    rows = _converted(converters, found)
    alias = connection.alias
    if not _plain(model):
        return [model.from_db(alias, names, values) for values in rows]
    # What from_db leaves, without its walk over every field (for a request with most fields
    # deferred, half of what building a batch chunk's requests and holds cost): the loaded
    # values in the instance's dict, a deferred field absent from it (as Model.__init__ leaves
    # it), and its state.
    objects = []
    for values in rows:
        obj = object.__new__(model)
        obj.__dict__.update(zip(names, values, strict=True))
        state = obj._state = ModelState()
        state.adding, state.db = False, alias
        objects.append(obj)
    return objects


@cache
def _plain(model: type[Model]) -> bool:
    """Whether from_db builds `model`'s instances as Model's does, with nothing listening to
    their creation. (Checked once per model: receivers are connected when apps load.)"""
    return (
        model.__init__ is Model.__init__
        and model.from_db.__func__ is Model.from_db.__func__
        and not pre_init.has_listeners(model)
        and not post_init.has_listeners(model)
        # Setting each field as __init__ does is writing it to the dict (a file's or a custom
        # field's descriptor would do more).
        and all(
            type(getattr(model, f.attname, None)) in _PLAIN_DESCRIPTORS
            for f in model._meta.concrete_fields
        )
    )


_PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


@cache
def _select(model: type[Model], vendor: str, by: str) -> tuple[tuple, list, str]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = tuple(meta.concrete_fields)
    columns = ", ".join(quote(f.column) for f in fields)
    where = quote(meta.get_field(by).column)
    sql = f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {where} = %s"  # noqa: S608
    return fields, _converters(model, fields), sql


def get(model: type[Model], by: str, value) -> Model | None:
    """The one row of `model` whose unique field `by` holds `value`, as the ORM would read it
    (None if there is none)."""
    found = select(model, by, value)
    return found[0] if found else None


def select(model: type[Model], by: str, value) -> list[Model]:
    """The rows of `model` whose field `by` holds `value`, as the ORM would read them, in no
    particular order (related objects not loaded)."""
    fields, converters, sql = _select(model, connection.vendor, by)
    with connection.cursor() as cursor:
        cursor.execute(sql, [model._meta.get_field(by).get_db_prep_value(value, connection)])
        found = cursor.fetchall()
    return _instances(model, fields, converters, found)


# Values per statement: well inside SQLite's 32,766 host parameters (PostgreSQL's 65,535).
_IN_PER_STATEMENT = 30_000


@lru_cache(maxsize=64)
def _select_in(
    model: type[Model], vendor: str, names: tuple[str, ...], by: str, equal: tuple[str, ...]
) -> tuple[tuple, list, str]:
    meta = model._meta
    quote = connection.ops.quote_name
    # The primary key always: an instance without one cannot be saved or compared.
    fields = tuple(
        f for f in meta.concrete_fields if f.primary_key or f.name in names or f.attname in names
    )
    columns = ", ".join(quote(f.column) for f in fields)
    where = "".join(f" AND {quote(meta.get_field(name).column)} = %s" for name in equal)
    # The IN list's marks are added per statement (their number varies).
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} "  # noqa: S608 (as in _insert)
        f"WHERE {quote(meta.get_field(by).column)} IN ({{marks}}){where}"
    )
    return fields, _converters(model, fields), sql


def select_in(model: type[Model], names: tuple[str, ...], by: str, values, **equal) -> list[Model]:
    """The rows of `model` whose field `by` holds one of `values` (and each field of `equal`
    its value), with only the fields `names` (and the key) loaded, as
    `model.objects.filter(by__in=values, **equal).only(*names)` reads them, in no particular
    order. Thousands of values at a time: the ORM's IN lookup prepared each value through
    several layers, and each row through its compiler (a batch ingest's chunk of 2,000)."""
    fields, converters, found = _read_in(model, names, by, values, equal)
    return _instances(model, fields, converters, found)


def values_in(model: type[Model], names: tuple[str, ...], by: str, values, **equal) -> list[tuple]:
    """As select_in, the rows as tuples of the key and `names`' values, in the model's field
    order, with no instance built: for link tables and other rows read only for their ids."""
    _, converters, found = _read_in(model, names, by, values, equal)
    if any(convert for _, convert in converters):
        return [tuple(row) for row in _converted(converters, found)]
    return found


def _read_in(model: type[Model], names: tuple[str, ...], by: str, values, equal: dict):
    fields, converters, sql = _select_in(
        model, connection.vendor, tuple(sorted(names)), by, tuple(sorted(equal))
    )
    field, db = model._meta.get_field(by), _db()
    prepared = [
        v if type(v) is int and _as_is(field) else field.get_db_prep_value(v, db) for v in values
    ]
    extra = [
        model._meta.get_field(name).get_db_prep_value(equal[name], db) for name in sorted(equal)
    ]
    found = []
    with connection.cursor() as cursor:
        for start in range(0, len(prepared), _IN_PER_STATEMENT):
            part = prepared[start : start + _IN_PER_STATEMENT]
            cursor.execute(sql.replace("{marks}", ", ".join(["%s"] * len(part))), [*part, *extra])
            found += cursor.fetchall()
    return fields, converters, found


class Prepared:
    """Values of many rows' `fields` (by index) through each field's get_db_prep_save, each
    distinct value prepared once for the set: a batch chunk's one model, status, time and
    prices, prepared for thousands of rows. Unhashable values (JSON) are prepared each time."""

    def __init__(self, fields: tuple[Field, ...]) -> None:
        self.fields = fields
        self.db = _db()
        self.done: dict[tuple[int, object], object] = {}
        # A JSON field's values are dicts and lists: not looked up (an exception each time).
        # A UUID is mostly one row's own (its request's key): looked up, each a miss and an
        # entry kept for nothing.
        self.each_time = frozenset(
            index
            for index, field in enumerate(fields)
            if isinstance(field, models.JSONField)
            or isinstance(field.target_field if field.is_relation else field, models.UUIDField)
        )
        # Those a JSON field would write as json.dumps' text (SQLite's column is text): written
        # by fastjson.dumps, the same value. The values of a set are answers read by
        # fastjson.stored_loads and usage counts, never NaN (see dumps).
        self.json_text = frozenset(
            index for index in self.each_time if _plain_json_text(fields[index], self.db)
        )
        # What a field sends as it is when given the type it holds (a key, a count, a note):
        # neither prepared nor looked up, where most are distinct per row.
        self.as_is = {index: _held_type(field) for index, field in enumerate(fields)}
        self.held = tuple(self.as_is[index] for index in range(len(fields)))

    def row(self, values: list) -> list:
        """`values` (one per field, in order), each as __call__ prepares it: those a field sends
        as they are picked out here, without a call each (a ledger entry's twenty columns,
        most of them text, counts and keys)."""
        held = self.held
        return [
            value
            if (kind := held[index]) is not None and (type(value) is kind or value is None)
            else self(index, value)
            for index, value in enumerate(values)
        ]

    def __call__(self, index: int, value):
        held = self.as_is[index]
        if held is not None and (type(value) is held or value is None):
            return value
        if index in self.each_time:
            if index in self.json_text and value is not None:
                return fastjson.dumps(value)
            return self.fields[index].get_db_prep_save(value, self.db)
        try:
            return self.done[index, value]
        except KeyError:
            result = self.done[index, value] = self.fields[index].get_db_prep_save(value, self.db)
            return result
        except TypeError:
            return self.fields[index].get_db_prep_save(value, self.db)


def _plain_json_text(field: Field, db) -> bool:
    """Whether `field` writes a value (not None) as json.dumps(value)'s text: a JSONField of
    its own kind, without an encoder, on a database that stores JSON as text (SQLite;
    PostgreSQL's is an adapter of its driver)."""
    return (
        type(field) is JSONField
        and field.encoder is None
        and type(db.ops).adapt_json_value is BaseDatabaseOperations.adapt_json_value
    )


def _held_type(field: Field) -> type | None:
    """The type whose values `field`'s get_db_prep_save returns unchanged (None as well), if
    any: text for a text field, int for an integer field or a key to one, bool for a
    boolean."""
    if not _as_is(field):
        return None
    if field.is_relation:
        field = field.target_field
    if isinstance(field, models.BooleanField):
        return bool
    if isinstance(field, models.IntegerField):
        return int
    return str


def update_many(objs: list[Model], fields: tuple[str, ...]) -> None:
    """UPDATE each of `objs` (rows of one model) with its `fields`, in one executemany (the
    values repeated across them prepared once, see Prepared)."""
    if objs:
        update_rows(type(objs[0]), fields, update_params(objs, fields))


def update_params(objs: list[Model], fields: tuple[str, ...]) -> list[list]:
    """What update_many sends for each of `objs` (of one model), its key last: prepared
    before a transaction, executed by update_rows inside it."""
    if not objs:
        return []
    model = type(objs[0])
    columns, _ = _update(model, connection.vendor, fields)
    prep = Prepared(tuple(field for field, _ in columns))
    pk, db = model._meta.pk, _db()
    return [[*_values(obj, columns, False, prep), pk.get_db_prep_value(obj.pk, db)] for obj in objs]


def update_rows(model: type[Model], fields: tuple[str, ...], params: list[list]) -> None:
    """UPDATE `model`'s rows with update_params' `params`, in one executemany."""
    if params:
        _, sql = _update(model, connection.vendor, fields)
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


@contextmanager
def bulk_page_cache() -> Iterator[None]:
    """SQLite's page cache at LLMOPS_SQLITE_BULK_CACHE_KIB for this connection while the block
    runs, then back to LLMOPS_SQLITE_CACHE_KIB (the pages beyond it freed). A batch's ingest
    updates rows spread over the whole request table and its indexes (a random UUID key): with
    the serving path's small cache, each chunk read most pages back from the operating system,
    one system call each (bench/batch_pipeline.py: a sixth of the ingest). PostgreSQL's buffers
    are the server's: nothing to do."""
    if connection.vendor != "sqlite" or not settings.LLMOPS_SQLITE_BULK_CACHE_KIB:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA cache_size=-{settings.LLMOPS_SQLITE_BULK_CACHE_KIB}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size=-{settings.LLMOPS_SQLITE_CACHE_KIB}")


@contextmanager
def checkpoints_aside() -> Iterator[None]:
    """While the block runs, this connection's commits leave SQLite's checkpoints (copying the
    write-ahead log into the database file, and syncing both) to a thread of their own
    (llmops.sqlite.Checkpointer), which runs them while this thread prepares its next
    transaction. For a bulk write on a file database in WAL mode; otherwise nothing changes
    (PostgreSQL checkpoints in the server)."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "wal":
            yield
            return
        cursor.execute("PRAGMA wal_autocheckpoint")
        (threshold,) = cursor.fetchone()
    checkpointer = sqlite.Checkpointer(connection.settings_dict["NAME"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        yield
    finally:
        checkpointer.close()
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(threshold)}")
