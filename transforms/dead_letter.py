"""Dead-letter records: what could not be used, why, and the record itself."""

import datetime
import json
import math

from models.problem_log import format_timestamp

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _json_safe(value):
    """`value` as strict JSON can hold it: a dead-letter record must never fail
    to be written because of the very damage it reports (NaN, bytes, ...)."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE.get(value, "NaN")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no coder or file can hold it
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, (int, bool)) or value is None:
        return value
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if hasattr(value, "item"):  # numpy scalar
        return _json_safe(value.item())
    return repr(value)


def dead_letter_record(stage: str, reason: str, detail: str, record) -> dict:
    """`record` is kept as close to the input as JSON allows so it can be fixed
    and replayed."""
    return {"stage": stage, "reason": reason, "detail": detail, "record": _json_safe(record)}


def problem_log_as_dict(log) -> dict:
    record = log._asdict()
    record["time_done"] = format_timestamp(log.time_done)
    return record


def to_json_line(record: dict) -> str:
    """Strict JSON (no NaN): made safe first if it does not encode as it is."""
    try:
        return json.dumps(record, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_json_safe(record), sort_keys=True, allow_nan=False)
