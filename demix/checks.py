"""The one place where option values are checked, with messages in the CLI's own terms.

Every message names the option as a user types it (``-k/--components``), the value given and
what was expected, e.g. ``-k/--components 0 is invalid; expected an integer ≥ 1``. Parameter
dataclasses call these in ``__post_init__``, so the CLI, the library API and a job arriving on
another process all get the same checks and the same words.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np

from demix.errors import ParameterError

__all__ = ["audible", "choice", "integer", "number", "optional_integer", "template_fields"]


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _range_text(low: float | None, high: float | None, what: str) -> str:
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    if low is not None:
        return f"{what} ≥ {low:g}"
    if high is not None:
        return f"{what} ≤ {high:g}"
    return what


def _refuse(option: str, value: object, expected: str) -> ParameterError:
    shown = (
        value if isinstance(value, int | float | np.number) and not isinstance(value, bool) else repr(value)
    )
    return ParameterError(f"{option} {shown} is invalid; expected {expected}")


def integer(option: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]``, or a :class:`ParameterError` naming ``option``."""
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):  # type: ignore[operator]
        raise _refuse(option, value, _range_text(low, high, "an integer"))
    return int(value)  # type: ignore[call-overload]


def optional_integer(
    option: str, value: object, *, low: int | None = None, high: int | None = None
) -> int | None:
    """As :func:`integer`, with None allowed (meaning "choose for me")."""
    return None if value is None else integer(option, value, low=low, high=high)


def number(
    option: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (``low`` excluded when ``low_open``)."""
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    x = float(value) if ok else math.nan  # type: ignore[arg-type]
    below = low is not None and (x <= low if low_open else x < low)
    if not math.isfinite(x) or below or (high is not None and x > high):
        what = "a finite number"
        if low_open and low is not None and high is None:
            raise _refuse(option, value, f"{what} > {low:g}")
        raise _refuse(option, value, _range_text(low, high, what))
    return x


def choice(option: str, value: object, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``."""
    allowed = tuple(choices)
    if value not in allowed:
        raise ParameterError(f"{option} {value!r} is unknown; expected one of {', '.join(allowed)}")
    return str(value)


#: One step of 24-bit PCM: quieter samples are written as zeros.
_LSB = {"PCM_16": 2.0**-15, "PCM_24": 2.0**-23, "PCM_32": 2.0**-31, "FLOAT": 1e-37}


def audible(name: str, data: np.ndarray, gain: float, subtype: str) -> None:
    """Before writing ``data * gain`` as ``name``: refuse non-finite samples, warn if all-zero.

    Non-finite samples are a :class:`ParameterError` (nothing is written). A file whose loudest
    sample falls below half a step of ``subtype`` would be written as silence: a warning giving
    the peak, the gain and the step, since the run itself may still be what was asked.
    """
    peak = float(np.max(np.abs(data), initial=0.0))
    if not math.isfinite(peak) or not math.isfinite(gain):
        raise ParameterError(
            f"{name} would hold infinite or NaN samples (gain {gain:g}); nothing was written"
        )
    step = _LSB.get(subtype.upper(), 0.0)
    if peak * gain <= step / 2:
        warnings.warn(
            f"{name} is silent as written: its peak {peak:.3g} × gain {gain:.3g} = {peak * gain:.3g} "
            f"is below half a step of {subtype} ({step / 2:.3g})",
            stacklevel=2,
        )


def template_fields(option: str, template: str) -> set[str]:
    """The ``{field}`` names of a naming template, or a :class:`ParameterError` for a malformed one."""
    import string

    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ParameterError(f"{option} {template!r} is not a valid template ({exc})") from None
