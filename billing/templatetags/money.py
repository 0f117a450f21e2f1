"""How the billing pages show money and shares. The exact amount rides along in data-usd."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from django import template

from routing.router import human

register = template.Library()


@register.filter(name="usd")
def format_usd(value) -> str:
    """Dollars for people: cents from $1 up, four significant digits below (a request often
    costs a fraction of a cent, which cents would show as $0.00)."""
    if value is None or value == "":
        return "—"
    amount = Decimal(value)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount >= 1 or amount == 0:
        return f"{sign}${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,f}"
    places = max(2, 3 - amount.adjusted())  # four significant digits
    # "f": str() of an amount under a millionth is in exponent form ($1.234E-7).
    return f"{sign}${amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


@register.filter(name="usd_exact")
def format_usd_exact(value) -> str:
    return "" if value is None or value == "" else f"{Decimal(value):.12f}"


@register.filter
def pct(value, places: int = 1) -> str:
    if value is None or value == "":
        return "—"
    return f"{Decimal(str(value)) * 100:.{int(places)}f}%"


@register.filter
def seconds(value) -> str:
    """A duration in the largest unit that reads well."""
    if value is None:
        return "—"
    value = float(value)
    if value < 90:
        return f"{value:.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.0f} min"
    if value < 48 * 3600:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


@register.filter
def duration(value) -> str:
    """A timedelta as a reason string says it: 1 h, 30 min, 1 d 2 h."""
    return "—" if value is None or value == "" else human(value)
