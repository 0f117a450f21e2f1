"""One-row INSERTs and UPDATEs for the serving hot path, without the ORM's query machinery.

Model.save() builds a Query, compiles it and walks the model's fields and signals on every
call: on a realtime request that was most of the CPU its writes took (bench/profile.py), far
more than SQLite or PostgreSQL spent running them. These write the row the ORM would — every
value through its field's pre_save and get_db_prep_save, defaults from the model instance —
with the SQL built once per model. They send no signals: use them only for models nothing
listens to (llmops.memo watches the configuration models; those are saved by the ORM).
"""

from __future__ import annotations

from functools import cache

from django.db import connection
from django.db.models import Field, Model


@cache
def _insert(model: type[Model], vendor: str, conflict: str) -> tuple[tuple[Field, ...], str, bool]:
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
    return fields, sql, generated


def insert(obj: Model, *, unless_exists: str = "") -> bool:
    """INSERT `obj` as obj.save(force_insert=True) would, setting its generated key. With
    `unless_exists` (a unique field's name), a row already holding that value wins: nothing
    is written and False is returned — no IntegrityError, so no savepoint is needed."""
    fields, sql, generated = _insert(type(obj), connection.vendor, unless_exists)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
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
    return fields, sql


def update(obj: Model, fields: tuple[str, ...] = ()) -> int:
    """UPDATE `obj`'s row with its `fields` (every field, like obj.save(), when none are
    named): the number of rows changed (0 if the row is gone)."""
    columns, sql = _update(type(obj), connection.vendor, fields)
    params = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in columns]
    params.append(obj._meta.pk.get_db_prep_value(obj.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
