"""The run summary: what happened to every record, from the pipeline's counters."""

from apache_beam.metrics.metric import MetricsFilter

from transforms.read import METRICS_NAMESPACE

_DEAD_LETTER_PREFIX = "dead_letter_"
_SKIPPED_PREFIX = "exercises_skipped_"
_NULLED_PREFIX = "bad_optional_"
_COUNTS = ("physical_records", "records_read", "records_unreadable", "bytes_unreadable",
           "unreadable_stretches", "records_valid", "records_outside_window",
           "duplicates_dropped", "students", "students_skipped", "rows_emitted",
           "rows_before_window", "exercises_fitted")
# Counted only by runs with saved student state (--state_input/--state_output).
_STATE_COUNTS = ("late_attempts", "state_students_read", "state_students_written",
                 "stored_rows_read")
# Dead-letter reasons of records that were valid when read (the sessionize stage).
SESSIONIZE_REASONS = ("too_many_attempts", "conflicting_duplicate")


def counter_values(result) -> dict:
    """Committed counter values of this pipeline's namespace (attempted where
    the runner does not commit)."""
    values = {}
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        values[name] = values.get(name, 0) + int(value or 0)
    return values


def summarize(counters: dict) -> dict:
    dead_lettered = {name[len(_DEAD_LETTER_PREFIX):]: value for name, value in counters.items()
                     if name.startswith(_DEAD_LETTER_PREFIX)}
    skipped = {name[len(_SKIPPED_PREFIX):]: value for name, value in counters.items()
               if name.startswith(_SKIPPED_PREFIX)}
    summary = {name: counters.get(name, 0) for name in _COUNTS}
    summary.update({name: counters[name] for name in _STATE_COUNTS if name in counters})
    summary["dead_lettered"] = dict(sorted(dead_lettered.items()))
    summary["dead_lettered_total"] = sum(dead_lettered.values())
    summary["exercises_skipped"] = dict(sorted(skipped.items()))
    summary["exercises_skipped_total"] = sum(skipped.values())
    summary["optional_fields_nulled"] = {
        name[len(_NULLED_PREFIX):]: value for name, value in sorted(counters.items())
        if name.startswith(_NULLED_PREFIX)}
    # The records that reached the replay (valid, not duplicates, not
    # dead-lettered by the sessionize stage): every one updates a student's state.
    summary["records_replayed"] = (summary["records_valid"] - summary["duplicates_dropped"]
                                   - sum(dead_lettered.get(reason, 0)
                                         for reason in SESSIONIZE_REASONS))
    # Its earlier name, kept for the scripts that read it.
    summary["records_trained_on"] = summary["records_replayed"]
    return summary


def counted(count: int, noun: str, plural_noun: str = "") -> str:
    """"1 exercise", "2 exercises", "12,000 records" (for printed summaries)."""
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"


def _by_reason(counts: dict) -> str:
    return f" ({', '.join(f'{k}: {v:,}' for k, v in counts.items())})" if counts else ""


def unreadable_line(summary: dict) -> str:
    """What could not be read at all, or "" when everything was."""
    if not summary.get("unreadable_stretches"):
        return ""
    stretches = counted(summary["unreadable_stretches"], "unreadable stretch",
                        "unreadable stretches")
    return (f"{stretches} in the input: {counted(summary['records_unreadable'], 'record')} and "
            f"{counted(summary['bytes_unreadable'], 'byte')} (of unknown records) not read; see "
            f"the dead letter's unreadable_file records.")


def human_summary(summary: dict, output: str) -> str:
    nulled = summary.get("optional_fields_nulled")
    lines = [
        f"Read {counted(summary['records_read'], 'ProblemLog')}: "
        f"{summary['records_replayed']:,} replayed, "
        f"{counted(summary['duplicates_dropped'], 'duplicate')} dropped, "
        f"{summary['dead_lettered_total']:,} dead-lettered{_by_reason(summary['dead_lettered'])}"
        + (f", {summary['records_outside_window']:,} outside the date window."
           if summary["records_outside_window"] else ".")
        + (f" Bad optional values replaced by null{_by_reason(nulled)}." if nulled else ""),
        unreadable_line(summary),
        f"{counted(summary['students'], 'student')} replayed "
        f"({summary['students_skipped']:,} skipped), "
        f"{counted(summary['rows_emitted'], 'training row')}"
        + (f" ({counted(summary['rows_before_window'], 'attempt')} before the window "
           f"replayed for history only)." if summary["rows_before_window"] else ".")
        + (f" Continued {counted(summary['state_students_read'], 'saved student')}"
           f" ({counted(summary.get('late_attempts', 0), 'late attempt')}); the fit also "
           f"sampled {counted(summary.get('stored_rows_read', 0), 'stored row')} of earlier "
           f"runs." if "state_students_read" in summary else ""),
        f"{counted(summary['exercises_fitted'], 'exercise')} fitted, "
        f"{summary['exercises_skipped_total']:,} skipped"
        f"{_by_reason(summary['exercises_skipped'])}.",
        f"Wall time {summary['wall_time_seconds']:.1f} s. Outputs under {output}:",
    ]
    lines = [line for line in lines if line]
    lines += [f"  {name:<18} {path}" for name, path in summary["outputs"].items()]
    evaluation = summary.get("evaluation")
    if evaluation and evaluation["holdout_log_likelihood"] is not None:
        line = (f"Holdout log likelihood {evaluation['holdout_log_likelihood']:.4f} over "
                f"{counted(evaluation['holdout_rows'], 'row')} (base rate "
                f"{evaluation['base_rate_log_likelihood']:.4f})")
        if evaluation.get("baseline_log_likelihood") is not None:
            line += (f"; on the {counted(evaluation['holdout_rows_compared'], 'row')} of "
                     f"exercises the "
                     f"active version {evaluation['baseline_version']!r} also has: "
                     f"{evaluation['new_log_likelihood_on_compared']:.4f} vs "
                     f"{evaluation['baseline_log_likelihood']:.4f}")
        lines.append(line + ".")
    selection = summary.get("l2_selection")
    if selection:
        scores = ", ".join(f"{l2:g}: " + ("n/a" if ll is None else f"{ll:.4f}") for l2, ll in
                           zip(selection["candidates"], selection["holdout_log_likelihood"]))
        lines.append(f"--l2 {selection['chosen']:g} chosen on the holdout (holdout log "
                     f"likelihood by --l2_candidates: {scores}).")
    if "datastore" in summary:
        store = summary["datastore"]
        lines.append(f"Datastore project {store['project']!r} namespace "
                     f"{store['namespace'] or '(default)'!r}: wrote model version "
                     f"{store['model_version']!r}, "
                     f"{'activated' if store['activated'] else 'NOT activated'} "
                     f"({store['deploy_decision']}); active version "
                     f"{store['active_version']!r}.")
    return "\n".join(lines)
