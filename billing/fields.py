"""MoneyField: US dollars as Decimal in Python, an exact integer of picodollars in the database.

Django's DecimalField is exact on PostgreSQL but not on SQLite, which stores a
NUMERIC column as a binary float: 0.70 + 0.10 - 0.80 comes back below zero, a
row of cents that exactly fills a budget is refused, and SUM() drifts. Storing
whole units of $10^-12 makes every sum, comparison and conditional UPDATE
integer arithmetic on both databases. PostgreSQL keeps them in numeric(38,0)
(no practical limit); SQLite's 64-bit integers hold up to about $9.2 million
per value or sum, which MAX_USD keeps inputs well inside.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Value

PLACES = 12
QUANTUM = Decimal(1).scaleb(-PLACES)
# The largest amount a form or the API accepts (a budget limit, an override rate's product).
MAX_USD = Decimal(1_000_000)


def to_units(amount: Decimal) -> int:
    """Exact picodollars of `amount`; refuses, never rounds, anything finer than $10^-12."""
    units = Decimal(amount).scaleb(PLACES)
    if units != units.to_integral_value():
        raise ValueError(f"{Decimal(amount):f} has more than {PLACES} decimal places")
    return int(units)


def from_units(units) -> Decimal:
    return Decimal(int(units)).scaleb(-PLACES)


class MoneyField(models.DecimalField):
    """A DecimalField to forms, the admin and DRF; an integer to the database."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 24)
        kwargs.setdefault("decimal_places", PLACES)
        super().__init__(*args, **kwargs)

    def get_internal_type(self) -> str:
        # Integer storage and lookups; and SQLite's float-based decimal converter is not applied.
        return "BigIntegerField"

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "numeric(38,0)"
        return super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if hasattr(value, "as_sql"):
            return value
        value = self.to_python(value)
        return None if value is None else to_units(value)

    def from_db_value(self, value, expression, connection):
        return None if value is None else from_units(value)


def usd_value(amount: Decimal) -> Value:
    """An amount for a query expression: F("spent_usd") + usd_value(x). A bare Decimal there would
    reach the database as dollars and be added to picodollars; usd_value() converts it like the
    column it meets."""
    return Value(amount, output_field=MoneyField())
