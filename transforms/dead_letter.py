"""Dead-letter records: what could not be used, why, and the record itself."""

import datetime
import json


from models.problem_log import format_timestamp


def _json_safe(value):
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
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
    return json.dumps(record, sort_keys=True, allow_nan=False)
