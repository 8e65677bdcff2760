"""The dashboard page: what it says (banner, headline cards, tables, notes),
its charts and their data, rendered by templates/dashboard.html."""

import datetime
from typing import Dict, List, Optional

import jinja2

from dashboard import charts, data, vega
from dashboard.formatting import FILTERS, fmt, fmt_date, fmt_int, fmt_pct, minus, plural, truncate
from models.regressions import (ALL_EXERCISES, OVERALL_ALPHA, Records,
                                check_options, combine, compare, day_tests, overall_change,
                                usable, version_changes)

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("dashboard", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENVIRONMENT.filters.update(FILTERS)
# The page's JSON (|tojson escapes <, >, & and ' for a <script> element).
_ENVIRONMENT.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "allow_nan": False}


def render_dashboard(records, title: str = "Knowledge model monitoring", *,
                     trailing_days: int = 7, min_samples: int = 30, top: int = 10,
                     multiples: int = 12, picker: int = 100, shared_y: bool = False,
                     generated_at: Optional[str] = None) -> str:
    """One self-contained HTML page (inline CSS, scripts and data; nothing fetched).

    Shows the latest day's verdict and headline numbers; mean log likelihood
    and samples per day for all exercises together, with model version
    changes marked; observed vs predicted fraction correct and AUC per day;
    the `top` exercises that got worse the most versus their trailing average
    (``models.regressions.regressions``); an exercise picker (those that got
    worse and the `picker` busiest); small multiples of the `multiples`
    busiest exercises (own y scales, or one shared scale: `shared_y`, also a
    switch on the page); and calibration (latest day and whole period).
    """
    check_options(trailing_days, min_samples, top)
    if generated_at is None:
        generated_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    records = Records.build(records)
    if records.empty:
        return _ENVIRONMENT.get_template("dashboard.html").render(
            empty=True, title=title, ignored=records.ignored)
    context = _context(records, trailing_days, min_samples, top, multiples, picker, shared_y)
    return _ENVIRONMENT.get_template("dashboard.html").render(
        empty=False, title=title, generated_at=generated_at, vega_script=vega.script(),
        library_versions=vega.versions(), **context)


def _context(records: Records, trailing_days: int, min_samples: int, top: int,
             multiples: int, picker: int, shared_y: bool) -> dict:
    overall = records.overall
    latest = overall[-1]
    span = data.Span(overall[0].date, latest.date)
    change = overall_change(records, trailing_days, min_samples)
    tested = day_tests(records, trailing_days, min_samples)
    worse = [r for r in tested["tests"] if r["significant"]][:top]
    changes = version_changes(overall)
    versions = sorted({v for d in overall for v in d.versions}.union(
        *({v for d in days for v in d.versions} for days in records.exercises.values())))

    totals, picked = data.picker_names(records.exercises, picker, [r["exercise"] for r in worse])
    busiest = totals[:multiples]
    offered = set(picked)
    drawn = list(dict.fromkeys(picked + [name for _, name in busiest]))
    overall_rows = data.overall_rows(overall, trailing_days, min_samples)
    period = combine(overall, latest.date, ALL_EXERCISES)
    datasets = {
        "overall": overall_rows,
        "versions": data.version_rows(overall),
        "exercises": data.exercise_rows(records.exercises, drawn, trailing_days, min_samples,
                                        [r["exercise"] for r in worse]),
        "calibration": data.calibration_rows(latest, period),
    }
    specs = _specs(span, trailing_days, datasets, overall_rows, busiest, shared_y, picked)
    for rows in datasets.values():
        for row in rows:
            row.pop("ordinal", None)
    return {
        "header": _header(records, span, versions),
        "banner": _banner(change, latest, min_samples),
        "kpis": _kpis(overall, latest, change, changes, trailing_days),
        "latest_date": fmt_date(latest.date),
        "trailing_days": trailing_days, "min_samples": min_samples, "top": top,
        "test": _test_description(tested),
        "has_trailing": any(row["trailing"] is not None for row in overall_rows),
        "has_versions": bool(changes),
        "has_auc": any(row["auc"] is not None for row in overall_rows),
        "worse": _worse_rows(worse),
        "no_regressions": _no_regressions(tested, worse),
        "picker": {"names": picked, "worse": [r["exercise"] for r in worse],
                   "totals": {name: total for total, name in totals if name in offered}},
        "panels": _panels(records, busiest, worse, trailing_days, min_samples),
        "shared_y": shared_y,
        "calibration": _calibration(latest, period),
        "ignored": records.ignored,
        "payload": {"config": charts.CONFIG, "datasets": datasets,
                    "charts": {name: _chart(spec) for name, spec in specs.items()}},
    }


def _specs(span, trailing_days, datasets, overall_rows, busiest, shared_y,
           picked) -> Dict[str, dict]:
    def values(field, rows=overall_rows):
        return [row[field] for row in rows if row.get(field) is not None]

    specs = {
        "ll": charts.log_likelihood(span, trailing_days,
                                    data.extent(values("ll") + values("trailing"), 0.02)),
        "samples": charts.samples(span),
        "correct": charts.correct(span, data.extent(values("observed") + values("predicted"),
                                                    0.04)),
        "auc": charts.auc(span, data.extent(values("auc"), 0.04)),
        "calibration": charts.calibration(),
    }
    if picked:
        specs["picked-ll"], specs["picked-samples"] = charts.picked(span, trailing_days,
                                                                   picked[0])
    rows_of: Dict[str, List[dict]] = {}
    for row in datasets["exercises"]:
        rows_of.setdefault(row["exercise"], []).append(row)
    if busiest:
        own = {name: data.extent(values("ll", rows_of[name]), 0.1) or (-1.0, 0.0)
               for _, name in busiest}
        shared = data.extent([v for range_ in own.values() for v in range_], 0.1)
        panel = charts.panel(span, shared, shared_y)
        for i, (_, name) in enumerate(busiest):
            specs[f"panel-{i}"] = charts.panel_params(panel, name, own[name])
    return specs


def _chart(spec: dict) -> dict:
    """A chart for the page's script: its spec, the datasets it reads, and for
    a panel the one exercise whose rows it needs (the script hands it only
    those rather than a copy of every drawn exercise)."""
    chart = {"spec": spec, "data": sorted(_data_names(spec))}
    params = {param["name"]: param.get("value") for param in spec.get("params", ())}
    if "panel_exercise" in params:
        chart["only"] = {"exercises": params["panel_exercise"]}
    return chart


def _data_names(spec) -> set:
    """The named datasets a Vega-Lite spec reads."""
    if isinstance(spec, list):
        return set().union(*map(_data_names, spec))
    if not isinstance(spec, dict):
        return set()
    names = {spec["data"]["name"]} if isinstance(spec.get("data"), dict) \
        and "name" in spec["data"] else set()
    return names.union(*map(_data_names, spec.values()))


def _header(records: Records, span: data.Span, versions: List[str]) -> dict:
    return {
        "period": (f"{fmt_date(span.first)} \u2013 {fmt_date(span.last)}"
                   if span.first != span.last else fmt_date(span.first)),
        "days": plural(len(records.overall), "day"),
        "exercises": plural(len(records.exercises), "exercise"),
        "versions": (f"model version{'s' if len(versions) != 1 else ''} "
                     f"{', '.join(versions) or 'unknown'}"),
        "last_iso": span.last.isoformat(),
    }


def _banner(change: Optional[dict], latest, min_samples: int) -> dict:
    if change is None:
        return {"kind": "neutral", "strong": f"Latest day {latest.date.isoformat()}:",
                "text": (f"not enough history to compare with (at least one earlier day and "
                         f"{min_samples:,} samples on each side are needed).")}
    standard_error = (f", one-sided p {_p_text(change['p_value'])}"
                      if change["p_value"] is not None else "")
    return {
        "kind": "bad" if change["got_worse"] else "good",
        "strong": ("The model as a whole got worse" if change["got_worse"]
                   else "No model-wide regression"),
        "text": (f"on {change['date']}: mean log likelihood {fmt(change['mean_log_likelihood'])} "
                 f"vs {fmt(change['trailing_mean_log_likelihood'])} over the previous "
                 f"{plural(change['trailing_days'], 'day')} (change "
                 f"{fmt(change['change'], signed=True)}{standard_error})."),
    }


def _kpis(overall, latest, change, changes, trailing_days: int) -> List[dict]:
    prior = overall[:-1][-trailing_days:]
    if not prior:
        samples_delta = "first day with data"
    else:
        average = sum(d.samples for d in prior) / len(prior)
        samples_delta = (
            minus(f"{100 * (latest.samples - average) / average:+.0f}% vs "
                  f"{fmt_int(average)} a day over the previous {plural(len(prior), 'day')}")
            if average else "no samples on the previous days")
    if change is None:
        ll_class, ll_delta = "", "no earlier days to compare with"
    else:
        ll_class = "bad" if change["change"] < 0 else "good"
        arrow = "\u25bc" if change["change"] < 0 else "\u25b2"
        ll_delta = (f"{arrow} {fmt(change['change'], signed=True)} vs the previous "
                    f"{plural(change['trailing_days'], 'day')} "
                    f"({fmt(change['trailing_mean_log_likelihood'])})")
    version_note = (f"since {fmt_date(changes[-1][0])}" if changes
                    else "every day shown" if len(overall) > 1 else "")
    if len(latest.versions) > 1:
        version_note = "several versions on this day"
    if latest.observed is None or latest.predicted is None:
        correct_note = "no predictions"
    else:
        gap = 100 * (latest.predicted - latest.observed)
        correct_note = minus(f"predicted {fmt_pct(latest.predicted)} ({gap:+.1f} points)")
    kpis = [
        ("Samples", fmt_int(latest.samples), "", samples_delta),
        ("Mean log likelihood", fmt(latest.ll), ll_class, ll_delta),
        ("AUC", fmt(latest.auc), "",
         "all exercises together" if latest.auc is not None else "not available for this day"),
        ("Observed correct", fmt_pct(latest.observed), "", correct_note),
        ("Model version", latest.version, "", version_note),
    ]
    return [{"label": label, "value": value, "long": len(value) > 11, "class": cls,
             "delta": delta} for label, value, cls, delta in kpis]


def _worse_rows(worse: List[dict]) -> List[dict]:
    biggest = max([-r["change"] for r in worse] + [0.0]) or 1.0
    rows = []
    for rank, r in enumerate(worse, 1):
        trailing_versions = r["trailing_model_versions"]
        was = None
        if trailing_versions and trailing_versions != [r["model_version"]]:
            was = {"title": f"trailing window used {', '.join(trailing_versions)}",
                   "text": f"was {truncate(', '.join(trailing_versions), 20)}"}
        rows.append({"rank": rank, "exercise": r["exercise"], "date": r["date"],
                     "p": _p_text(r["p_value"]), "q": _p_text(r["q_value"]),
                     "ll": fmt(r["mean_log_likelihood"]),
                     "trailing": fmt(r["trailing_mean_log_likelihood"]),
                     "change": fmt(r["change"], signed=True), "exact": f"{r['change']:.6f}",
                     "bar": f"{100 * -r['change'] / biggest:.0f}",
                     "samples": f"{r['samples']:,}",
                     "trailing_samples": f"{r['trailing_samples']:,}",
                     "version": r["model_version"], "was": was})
    return rows


def _p_text(value: Optional[float]) -> str:
    """A p-value as the table shows it: "0.012", "<0.001", "n/a"."""
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _no_regressions(tested: dict, worse) -> str:
    if worse:
        return ""
    compared = len(tested["tests"])
    return (f"none of the {plural(compared, 'exercise')} compared on {tested['date']} got "
            f"significantly worse" if compared else
            "no exercise has enough samples and history to compare on the latest day")


def _test_description(tested: dict) -> dict:
    """How the table's exercises were chosen, for the page's note."""
    factor = tested["noise_factor"]
    return {
        "fdr": f"{100 * tested['fdr']:g}%",
        "overall_alpha": f"{OVERALL_ALPHA:g}",
        "compared": plural(len(tested["tests"]), "exercise"),
        "date": tested["date"] or "the latest day",
        "noise": (f"{factor:.2f}" if tested["calibrated"] else None),
        "calibration_tests": f"{tested['calibration_tests']:,}",
    }


def _panels(records: Records, busiest, worse, trailing_days: int, min_samples: int) -> List[dict]:
    worse_by_name = {r["exercise"]: r for r in worse}
    panels = []
    for i, (total, name) in enumerate(busiest):
        days = records.exercises[name]
        found = worse_by_name.get(name) or compare(days, trailing_days, min_samples)
        status = {"class": "", "title": "", "text": "no log likelihood"}
        if found is not None:
            status = {"class": "bad" if found["change"] < 0 else "good",
                      "title": (f"latest {fmt(found['mean_log_likelihood'])}, trailing "
                                f"{fmt(found['trailing_mean_log_likelihood'])}"),
                      "text": f"{fmt(found['change'], signed=True)} vs trailing"}
        elif usable(days):
            status["text"] = f"latest {fmt(usable(days)[-1].ll)}"
        panels.append({"id": f"panel-{i}", "name": name, "samples": f"{total:,} samples",
                       "worse": name in worse_by_name, "status": status})
    return panels


def _calibration(latest, period) -> dict:
    latest_bins = {b.index: b for b in latest.calibration}
    rows = []
    for b in period.calibration:
        lb = latest_bins.get(b.index)
        rows.append({"range": data.bin_range(b),
                     "latest": [fmt_int(lb.samples if lb else 0),
                                fmt(lb.predicted if lb else None),
                                fmt(lb.observed if lb else None)],
                     "period": [fmt_int(b.samples), fmt(b.predicted), fmt(b.observed)]})
    return {"rows": rows, "drawn": bool(data.usable_bins(period) or data.usable_bins(latest)),
            "period_samples": f"{period.samples:,}", "latest_samples": f"{latest.samples:,}"}
