"""Tests for the monitoring report: the regression statistics
(models.regressions) and the HTML dashboard (dashboard/).

The browser tests open pages in headless Chromium: a screenshot of the
dashboard (set DASHBOARD_SCREENSHOT=/some/path.png to keep a copy), and the
DOM after the inlined Vega has drawn every chart, with every request the page
makes sent to a local proxy that records it (there must be none).
"""

import datetime
import html
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import zlib

import altair as alt
import jsonschema
import numpy as np
import pytest
from altair.utils.schemapi import validate_jsonschema
from markupsafe import escape

from dashboard import render_dashboard
from dashboard.formatting import fmt
from models import regressions as mr
from models.logistic import auc as auc_score

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
INSTALL = "apt-get install -y --no-install-recommends chromium"
WINDOW = (1280, 2400)
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"headless Chromium is not installed (as root: apt-get update && {INSTALL})")


def record(date, exercise, ll, samples, version="v1", auc=0.7, observed=0.7, predicted=0.7,
           calibration=None):
    return {"date": date, "exercise": exercise, "model_version": version, "samples": samples,
            "mean_log_likelihood": ll, "observed_correct": observed,
            "mean_predicted_correct": predicted, "auc": auc,
            "calibration": calibration or []}


def day(i):
    return (datetime.date(2026, 11, 1) + datetime.timedelta(days=i)).isoformat()


# --------------------------------------------------------------------------
# Synthetic monitoring records: real predictions and answers aggregated the way
# the monitoring pipeline does, so every number on the page is consistent.

def _aggregate(date, exercise, version, p, y, students=None):
    n = len(y)
    per_attempt = np.where(y, np.log(p), np.log1p(-p))
    ll = float(np.mean(per_attempt)) if n else None
    bins = []
    index = np.minimum((p * 10).astype(int), 9)
    for b in range(10):
        in_bin = index == b
        k = int(in_bin.sum())
        bins.append({"bin": b, "low": b / 10, "high": (b + 1) / 10, "samples": k,
                     "observed_correct": float(y[in_bin].mean()) if k else None,
                     "mean_predicted": float(p[in_bin].mean()) if k else None})
    return {"date": date, "exercise": exercise, "model_version": version, "samples": n,
            "mean_log_likelihood": ll,
            "log_likelihood_std": float(np.std(per_attempt)) if n else None,
            "observed_correct": float(y.mean()) if n else None,
            "mean_predicted_correct": float(p.mean()) if n else None,
            "auc": auc_score(p, y) if n else None, "calibration": bins,
            **({} if students is None else {"students": students})}


def synthetic_records(days=30, exercises=20, seed=7, regression="long_division",
                      change_day=15):
    """`exercises` exercises over `days` days: sample sizes from a handful to
    thousands a day, some days missing, model v2 from `change_day` (a little
    better), and on the last day the `regression` exercise's predictions become
    badly wrong."""
    rng = np.random.default_rng(seed)
    names = [regression, "fractions_1", "adding_decimals", "multiplying_fractions",
             "order_of_operations", "linear_equations_1", "area_of_triangles",
             "negative_numbers", "exponents_1", "ratios_intro", "percent_word_problems",
             "place_value", "rounding_to_nearest_10", "mean_median_mode",
             "slope_intercept_form", "systems_of_equations", "pythagorean_theorem",
             "factoring_quadratics", "unit_conversion", "probability_1"][:exercises]
    scale = {name: int(1500 * 0.78 ** i) + 15 for i, name in enumerate(
        rng.permutation(names))}
    skill = {name: rng.uniform(-0.5, 1.8) for name in names}
    records = []
    for d in range(days):
        date = day(d)
        version = "v1" if d < change_day else "v2"
        slope, bias = (0.75, 0.25) if version == "v1" else (0.95, 0.05)   # v2 is better
        ps, ys = [], []
        for name in names:
            if name == names[-1] and d % 5 == 3:      # an exercise with gaps
                continue
            n = int(rng.poisson(scale[name] * (0.75 if d % 7 in (5, 6) else 1.0)))
            logit = rng.normal(skill[name], 1.1, n)
            y = rng.random(n) < 1 / (1 + np.exp(-logit))
            p = 1 / (1 + np.exp(-(slope * logit + bias)))
            if name == regression and d == days - 1:
                p = 1 / (1 + np.exp(-(-0.9 * logit + 0.5)))   # the model broke
            p = np.clip(p, 1e-4, 1 - 1e-4)
            ps.append(p)
            ys.append(y)
            records.append(_aggregate(date, name, version, p, y))
        records.append(_aggregate(date, mr.ALL_EXERCISES, version,
                                  np.concatenate(ps), np.concatenate(ys)))
    return records


# --------------------------------------------------------------------------
# Regressions

def test_regression_detection_by_hand():
    records = []
    # "drops": 6 trailing days (only the last 3 are in a 3-day window), then a drop
    for i, (ll, n) in enumerate([(-0.1, 500), (-0.5, 100), (-0.5, 100),
                                 (-0.50, 100), (-0.40, 300), (-0.60, 100)]):
        records.append(record(day(i), "drops", ll, n, version="v1" if i < 5 else "v0"))
    records.append(record(day(6), "drops", -0.90, 200, version="v2"))
    # "small_dip": a mild drop
    for i in range(6):
        records.append(record(day(i), "small_dip", -0.50, 100))
    records.append(record(day(6), "small_dip", -0.52, 100))
    # "too_few": a huge drop, but only 29 samples on the latest day
    for i in range(6):
        records.append(record(day(i), "too_few", -0.30, 1000))
    records.append(record(day(6), "too_few", -2.0, 29))
    # "thin_history": trailing window holds 20 samples in total
    records += [record(day(5), "thin_history", -0.3, 20), record(day(6), "thin_history", -1.5, 500)]
    # stable and improving exercises
    for i in range(7):
        records.append(record(day(i), "stable", -0.45, 400))
        records.append(record(day(i), "improving", -0.6 + 0.05 * i, 400))
    # "__all__" is never an exercise
    for i in range(7):
        records.append(record(day(i), "__all__", -0.3 - 0.2 * (i == 6), 5000))

    result = mr.regressions(records, trailing_days=3, min_samples=30)

    assert [r["exercise"] for r in result] == ["drops", "small_dip"]
    top = result[0]
    trailing = (100 * -0.50 + 300 * -0.40 + 100 * -0.60) / 500      # = -0.46
    assert top["trailing_mean_log_likelihood"] == pytest.approx(-0.46, abs=1e-12)
    assert top["trailing_mean_log_likelihood"] == pytest.approx(trailing, abs=1e-12)
    assert top["change"] == pytest.approx(-0.90 - -0.46, abs=1e-12)     # -0.44
    assert top["mean_log_likelihood"] == -0.90
    assert (top["date"], top["samples"], top["trailing_samples"]) == (day(6), 200, 500)
    assert top["model_version"] == "v2"
    assert top["trailing_model_versions"] == ["v0", "v1"]
    assert (top["trailing_start"], top["trailing_end"], top["trailing_days"]) == (day(3), day(5), 3)
    assert result[1]["change"] == pytest.approx(-0.02, abs=1e-12)
    assert set(top) >= {"exercise", "date", "mean_log_likelihood", "trailing_mean_log_likelihood",
                        "change", "samples", "trailing_samples", "model_version",
                        "trailing_model_versions"}

    assert [r["exercise"] for r in mr.regressions(records, trailing_days=3, min_samples=30,
                                                  top=1)] == ["drops"]
    # with min_samples lowered, the thin exercises are compared and are the worst
    low = mr.regressions(records, trailing_days=3, min_samples=20, top=None)
    assert [r["exercise"] for r in low] == ["too_few", "thin_history", "drops", "small_dip"]

    overall = mr.overall_change(records, trailing_days=3, min_samples=30)
    assert overall["exercise"] == "__all__"
    assert overall["change"] == pytest.approx(-0.2, abs=1e-12)
    assert overall["got_worse"] is True


def test_regressions_use_existing_days_and_edge_cases():
    # gaps: the trailing window is the previous days *with data*, not calendar days
    records = [record(day(0), "gappy", -0.2, 100), record(day(10), "gappy", -0.4, 100),
               record(day(20), "gappy", -0.3, 100), record(day(21), "gappy", -0.9, 100)]
    [r] = mr.regressions(records, trailing_days=2)
    assert r["trailing_mean_log_likelihood"] == pytest.approx(-0.35)
    assert r["change"] == pytest.approx(-0.55)
    assert r["trailing_start"] == day(10)
    # one day only, empty input, null values and malformed records
    assert mr.regressions([record(day(0), "a", -0.5, 100)]) == []
    assert mr.overall_change([record(day(0), "a", -0.5, 100)]) is None
    assert mr.regressions([]) == []
    assert mr.overall_change([]) is None
    messy = [record(day(0), "a", -0.5, 100), record(day(1), "a", None, 0),
             {"exercise": "no_date"}, "not a record", record(day(1), "b", float("nan"), 50)]
    assert mr.regressions(messy) == []
    with pytest.raises(ValueError):
        mr.regressions(records, trailing_days=0)


def test_overall_change_derived_from_exercises_when_all_is_missing():
    records = []
    for i in range(3):
        records.append(record(day(i), "a", -0.5, 100))
        records.append(record(day(i), "b", -0.3, 300))
    records.append(record(day(3), "a", -0.9, 100))
    records.append(record(day(3), "b", -0.3, 300))
    overall = mr.overall_change(records, trailing_days=3)
    assert overall["trailing_mean_log_likelihood"] == pytest.approx(-0.35)
    assert overall["mean_log_likelihood"] == pytest.approx(-0.45)
    assert overall["got_worse"]


def test_synthetic_regression_is_found_first():
    records = synthetic_records()
    result = mr.regressions(records)
    assert result[0]["exercise"] == "long_division"
    assert result[0]["change"] < -0.3
    assert result[0]["date"] == day(29)
    assert all(r["change"] < 0 for r in result)
    assert [r["change"] for r in result] == sorted(r["change"] for r in result)


def test_a_drop_within_the_noise_is_not_a_regression():
    """With the days' spread known, only drops beyond 2 standard errors count."""
    def spread_record(date, ll, samples, std):
        return dict(record(date, "noisy", ll, samples), log_likelihood_std=std)
    history = [spread_record(day(i), -0.50, 400, 0.6) for i in range(7)]
    # Standard error of the difference: sqrt(0.36/100 + 0.36/2800) = 0.0611.
    small = history + [spread_record(day(7), -0.55, 100, 0.6)]
    large = history + [spread_record(day(7), -0.70, 100, 0.6)]
    assert mr.regressions(small) == []
    (found,) = mr.regressions(large)
    assert found["standard_error"] == pytest.approx((0.36 / 100 + 0.36 / 2800) ** 0.5)
    assert found["change"] == pytest.approx(-0.20) and found["significant"]
    # Records without the spread (older monitor output) count every drop.
    plain = [dict(r) for r in small]
    for r in plain:
        del r["log_likelihood_std"]
    assert [r["exercise"] for r in mr.regressions(plain)] == ["noisy"]


def test_every_date_a_record_can_carry():
    """0001-01-01 and 9999-12-31 are valid dates; nothing shifts past them."""
    records = [record("0001-01-01", "a", -0.5, 100), record("0001-01-02", "a", -0.5, 100),
               record("9999-12-30", "a", -0.5, 100), record("9999-12-31", "a", -0.9, 100)]
    (found,) = mr.regressions(records)
    assert (found["date"], found["trailing_start"]) == ("9999-12-31", "0001-01-01")
    assert mr.overall_change(records)["got_worse"]
    data = mr.Records.build(records)
    assert [d.date.isoformat() for d in data.overall] == [
        "0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31"]
    assert [d for d, _ in mr.trailing_series(data.overall, 7, 30)][-1] == datetime.date.max
    assert mr.version_changes(data.overall) == []


def steady_records(days=30, exercises=50, seed=11, degraded=None):
    """A fixed model on data that does not change: each day an exercise is
    practised by a few to ~100 students, each doing a run of attempts with
    their own skill (so one student's attempts are correlated, as in real
    logs), and the model predicts a shrunk version of the true probability.
    exercise_00 is the busiest, exercise_49 the quietest. `degraded`:
    (exercise index, day) on which that exercise's model loses its
    features (predicts from the exercise's difficulty alone)."""
    rng = np.random.default_rng(seed)
    names = [f"exercise_{i:02d}" for i in range(exercises)]
    students_a_day = -np.sort(-np.exp(rng.uniform(np.log(4), np.log(100), exercises)))
    difficulty = rng.normal(0.6, 0.8, exercises)
    records = []
    for d in range(days):
        ps, ys, everyone = [], [], 0
        for i, name in enumerate(names):
            students = rng.poisson(students_a_day[i])
            runs = rng.geometric(1 / 6, students)
            skill = np.repeat(rng.normal(0, 1.2, students), runs)
            logit = difficulty[i] + skill + rng.normal(0, 0.3, len(skill))
            y = rng.random(len(logit)) < 1 / (1 + np.exp(-logit))
            p = 1 / (1 + np.exp(-0.8 * logit))
            if degraded == (i, d):
                p = np.full(len(logit), 1 / (1 + np.exp(-0.8 * difficulty[i])))
            if not len(y):
                continue
            p = np.clip(p, 1e-4, 1 - 1e-4)
            ps.append(p)
            ys.append(y)
            everyone += students
            records.append(_aggregate(day(d), name, "v1", p, y, students))
        records.append(_aggregate(day(d), mr.ALL_EXERCISES, "v1", np.concatenate(ps),
                                  np.concatenate(ys), everyone))
    return records


def test_a_steady_model_raises_almost_no_alarm_for_30_days():
    """Every night's test over 30 days of a fixed model on unchanging data:
    the plain 2-sigma rule flags a couple of exercises most days; the day's
    Benjamini-Hochberg test with the measured noise factor almost never."""
    records = mr.Records.build(steady_records())
    flagged, plain, model_wide = [], 0, 0
    for d in range(1, 30):
        tested = mr.day_tests(records, as_of=day(d))
        assert all(r["date"] == day(d) for r in tested["tests"])
        plain += sum(1 for r in tested["tests"]
                     if r["change"] < -2 * r["standard_error"])
        flagged += [(d, r["exercise"]) for r in tested["tests"] if r["significant"]]
        model_wide += mr.overall_change(records, as_of=day(d))["got_worse"]
        if d >= 12:
            assert tested["calibrated"] and tested["noise_factor"] > 1.3
    assert plain > 29          # the old rule: more than one false alarm a day
    assert len(flagged) <= 1, flagged
    assert model_wide <= 1


def test_a_degraded_exercise_is_still_found():
    records = steady_records(degraded=(5, 29))
    worse = mr.regressions(records, top=None)
    assert [r["exercise"] for r in worse] == ["exercise_05"]
    (found,) = worse
    assert found["q_value"] <= mr.FALSE_DISCOVERY_RATE and found["p_value"] < found["q_value"]
    assert found["noise_factor"] > 1 and found["z"] < -3
    tested = mr.day_tests(records)
    assert tested["date"] == day(29) and len(tested["tests"]) >= 35
    # too few samples that day: not compared at all
    assert mr.regressions(records, min_samples=found["samples"] + 1, top=None) == []


def test_benjamini_hochberg():
    q = mr.benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    # sorted: 0.01 * 4/1, 0.03 * 4/2, 0.04 * 4/3, 0.2 * 4/4, then the running
    # minimum from the largest down: 0.04, 0.0533, 0.0533, 0.2
    assert q == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert mr.benjamini_hochberg([0.5]) == [0.5] and mr.benjamini_hochberg([]) == []
    assert mr.noise_factor([0.1] * 9) == (mr.UNCALIBRATED_NOISE_FACTOR, False)   # too few
    assert mr.noise_factor([0.1] * 20) == (1.0, True)           # never below 1
    assert mr.noise_factor([2.0] * 20)[0] == pytest.approx(4 / mr.CHI2_1_MEDIAN)


def test_only_exercises_with_data_on_the_day_are_tested():
    """An exercise whose last data is older is not flagged again every night."""
    records = [record(day(i), "old", -0.5, 100) for i in range(5)]
    records.append(record(day(5), "old", -0.9, 100))            # dropped on day 5...
    records += [record(day(i), "busy", -0.5, 100) for i in range(8)]   # ...latest is day 7
    assert mr.regressions(records) == []
    assert [r["exercise"] for r in mr.regressions(records, as_of=day(5))] == ["old"]


# --------------------------------------------------------------------------
# The page (dashboard/)

EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
DATA = re.compile(r'<script type="application/json" id="dashboard-data">(.*?)</script>', re.S)


def payload(page):
    """The page's charts and datasets (the JSON its script draws from)."""
    return json.loads(DATA.search(page).group(1))


def markup(page):
    """The page without the contents of its scripts."""
    return re.sub(r"(<script\b[^>]*>).*?</script>", r"\1</script>", page, flags=re.S | re.I)


def filters(spec):
    """Every filter expression in a Vega-Lite spec."""
    if isinstance(spec, list):
        return [f for item in spec for f in filters(item)]
    if not isinstance(spec, dict):
        return []
    own = [spec["filter"]] if isinstance(spec.get("filter"), str) else []
    return own + [f for value in spec.values() for f in filters(value)]


def assert_self_contained(page, charts=True):
    """No external reference; exactly the page's own three inline scripts."""
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not EXTERNAL.search(page)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert "@import" not in style and "url(" not in style
    scripts = re.findall(r"<script\b[^>]*>", page, re.I)
    assert scripts == (['<script type="application/json" id="dashboard-data">', "<script>",
                        "<script>"] if charts else [])
    assert not re.search(r"<(?:link|img|iframe|object|embed|base)\b", markup(page), re.I)


def test_dashboard_is_self_contained_and_shows_regressions():
    records = synthetic_records()
    page = render_dashboard(records, generated_at="2026-12-01 06:00 UTC")
    assert_self_contained(page)
    for found in mr.regressions(records):
        assert f'data-pick="{found["exercise"]}">{found["exercise"]}</td>' in page
        assert fmt(found["change"], signed=True) in page
    assert "model versions v1, v2" in page
    assert "got worse" in page and "2026-12-01 06:00 UTC" in page
    data = payload(page)
    # every chart has a place on the page and names the datasets it reads
    placed = re.findall(r'data-chart="([^"]+)"', markup(page))
    assert sorted(placed) == sorted(data["charts"])
    assert len([name for name in placed if name.startswith("panel-")]) == 12
    for chart in data["charts"].values():
        assert chart["data"] and set(chart["data"]) <= set(data["datasets"])
    # the version change is marked, at the edge before its first day
    (change,) = data["datasets"]["versions"]
    assert (change["label"], change["date"]) == ("model v2", day(15))
    assert change["t"] == (datetime.date(2026, 11, 16) - datetime.date(1970, 1, 1)).days \
        * 86_400_000 - 43_200_000
    # the regression's last day is drawn red in its panel, nowhere else
    red = {row["exercise"] for row in data["datasets"]["exercises"] if row["red_point"]}
    assert red == {"long_division"}


def test_dashboard_table_shows_version_changes():
    records = [record(day(i), "drops", -0.4, 100, version="v1") for i in range(5)]
    records.append(record(day(5), "drops", -0.9, 100, version="v2"))
    page = render_dashboard(records)
    assert 'data-pick="drops">drops</td>' in page
    assert "\u22120.500" in page                     # the change, with a typographic minus
    assert ">was v1</span>" in page                  # the trailing window's version
    assert [v["label"] for v in payload(page)["datasets"]["versions"]] == ["model v2"]


def test_dashboard_escapes_exercise_names():
    evil = "<script>alert(1)</script>"
    version = 'v"<b>x</b>'
    records = []
    for i in range(8):
        records.append(record(day(i), evil, -0.4 if i < 7 else -1.2, 500, version=version))
        records.append(record(day(i), "fine & dandy", -0.4, 500))
    page = render_dashboard(records, title="Monitoring <i>now</i>")
    assert evil not in page
    assert str(escape(evil)) in page                  # in the table, panel and picker
    assert "<b>x</b>" not in page and str(escape(version)) in page
    assert "fine &amp; dandy" in page and "<i>now</i>" not in page
    assert_self_contained(page)
    # the JSON holds the names as data, escaped for a <script> element
    text = DATA.search(page).group(1)
    assert "<" not in text and ">" not in text and "&" not in text
    names = {row["exercise"] for row in payload(page)["datasets"]["exercises"]}
    assert names == {evil, "fine & dandy"}
    # the panels name their exercise in a parameter, never inside an expression
    panels = [c["spec"] for name, c in payload(page)["charts"].items() if name.startswith("panel")]
    assert {{p["name"]: p.get("value") for p in spec["params"]}["panel_exercise"]
            for spec in panels} == {evil, "fine & dandy"}
    assert not any(evil in expression for spec in panels for expression in filters(spec))
    assert 'option value="&lt;script&gt;alert(1)&lt;/script&gt;"' in page


def test_dashboard_edge_cases():
    empty = render_dashboard([])
    assert "There is no monitoring data" in empty
    assert_self_contained(empty, charts=False)
    junk = render_dashboard(["junk", {"date": "x"}])
    assert "There is no monitoring data" in junk and "2 malformed records" in junk

    one_day = render_dashboard([record(day(0), "a", -0.5, 100, auc=None),
                                record(day(0), "__all__", -0.5, 100, auc=None)])
    assert "No regressions" in one_day and "not enough history" in one_day
    assert_self_contained(one_day)

    stable = [record(day(i), name, -0.5, 100) for i in range(5) for name in ("a", "b")]
    page = render_dashboard(stable)
    assert "No regressions" in page and "No model-wide regression" in page

    gaps = [record(day(i), "a", -0.5 - 0.01 * i, 100, auc=None) for i in (0, 1, 5, 6, 9)]
    page = render_dashboard(gaps, multiples=0, picker=0, top=0)
    assert "No AUC in these records" in page and 'data-chart="auc"' not in page
    assert "panel-0" not in page and 'id="exercise-picker"' not in page
    assert_self_contained(page)
    # missing days break the lines: segments 0-1, 5-6 and a lone day 9
    rows = payload(page)["datasets"]["overall"]
    assert [(r["date"][-2:], r["ll_seg"], r["ll_lone"]) for r in rows] == [
        ("01", 1, False), ("02", 1, False), ("06", 2, False), ("07", 2, False),
        ("10", 3, True)]


EDGE_PAGES = {
    "both ends": [record("0001-01-01", "a", -0.5, 100), record("0001-01-02", "a", -0.6, 100),
                  record("9999-12-30", "a", -0.5, 100, version="v2"),
                  record("9999-12-31", "a", -0.9, 100, version="v2")],
    "year 1 only": [record("0001-01-01", "a", -0.5, 100), record("0001-01-02", "b", -0.6, 100,
                                                                  version="v2")],
    "year 9999 only": [record("9999-12-31", "a", -0.5, 100, version="v9")],
    "year 1 and 2026": [record("0001-01-01", "a", -0.5, 100)] + [
        record(day(i), name, -0.5 - 0.01 * i, 100) for i in range(7) for name in "ab"],
}


@pytest.mark.parametrize("name", EDGE_PAGES)
def test_every_date_renders(name):
    """Records dated 0001-01-01 .. 9999-12-31 used to end in OverflowError."""
    page = render_dashboard(EDGE_PAGES[name], generated_at="x")
    assert_self_contained(page)
    data = payload(page)
    days = {row["date"]: row["t"] for row in data["datasets"]["overall"]}
    expected = {"0001-01-01": -62_135_596_800_000, "9999-12-31": 253_402_214_400_000}
    assert {d: t for d, t in days.items() if d in expected} == {
        d: t for d, t in expected.items() if d in days}
    assert ("Jan 1, 0001" in page) == ("0001-01-01" in days)
    assert ("Dec 31, 9999" in page) == ("9999-12-31" in days)
    # the x domain stays inside years 0 .. 9999 (d3 prints year 10000 as 0000)
    domain = data["charts"]["ll"]["spec"]["layer"][0]["encoding"]["x"]["scale"]["domain"]
    assert -62_167_219_200_000 <= domain[0] < domain[1] < 253_402_300_800_000


def test_dashboard_options():
    records = synthetic_records(days=10, exercises=6)
    page = render_dashboard(records, multiples=3, picker=2, shared_y=True)
    data = payload(page)
    assert sorted(name for name in data["charts"] if name.startswith("panel-")) == [
        "panel-0", "panel-1", "panel-2"]
    params = {p["name"]: p.get("value") for p in data["charts"]["panel-0"]["spec"]["params"]}
    assert params["shared_y"] is True
    (shared_low, shared_high), (own_low, own_high) = params["shared_range"], params["own_range"]
    assert shared_low <= own_low < own_high <= shared_high
    assert 'id="shared-y" checked' in page
    options = re.findall(r'<option value="([^"]*)"', page)
    worse = [r["exercise"] for r in mr.regressions(records)]
    assert options[:len(worse)] == worse and len(options) == len(set(worse) | set(options))
    assert len(set(options) - set(worse)) <= 2
    with pytest.raises(ValueError):
        render_dashboard(records, trailing_days=0)


def test_every_chart_is_valid_vega_lite():
    """The specs are built without Altair's (slow) validation; check them here
    against the Vega-Lite schema (one panel: they differ in parameter values)."""
    charts = payload(render_dashboard(synthetic_records(days=8, exercises=4)))["charts"]
    schema = alt.vegalite.v6.schema.core.load_schema()
    for name, chart in charts.items():
        if name.startswith("panel-") and name != "panel-0":
            continue
        validate_jsonschema(chart["spec"], schema)
    with pytest.raises(jsonschema.ValidationError):
        validate_jsonschema({"mark": "no such mark"}, schema)


# --------------------------------------------------------------------------
# Chromium

def png_info(path):
    """(width, height, colour type, bit depth) from the PNG header."""
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, colour, depth


def png_pixels(path):
    """The pixels (height, width, channels) of an 8-bit non-interlaced PNG,
    decoded with the standard library (zlib, struct) and numpy."""
    with open(path, "rb") as f:
        data = f.read()
    width, height, colour, depth = png_info(path)
    assert depth == 8 and colour in (0, 2, 4, 6) and data[28] == 0   # not interlaced
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    assert len(raw) == height * (stride + 1)
    out = bytearray(height * stride)
    previous = bytes(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], raw[start + 1:start + 1 + stride]
        if kind == 0:       # None
            current = bytes(line)
        elif kind == 1:     # Sub: a running sum along the row, per channel
            sums = np.cumsum(np.frombuffer(line, np.uint8).reshape(width, channels), axis=0,
                             dtype=np.uint64)
            current = (sums & 255).astype(np.uint8).tobytes()
        elif kind == 2:     # Up
            current = ((np.frombuffer(line, np.uint8).astype(np.uint16)
                        + np.frombuffer(previous, np.uint8)) & 255).astype(np.uint8).tobytes()
        else:               # Average (3), Paeth (4): sequential along the row
            c, up = bytearray(line), previous
            for i in range(stride):
                a = c[i - channels] if i >= channels else 0
                if kind == 3:
                    c[i] = (c[i] + ((a + up[i]) >> 1)) & 255
                    continue
                b, d = up[i], (up[i - channels] if i >= channels else 0)
                pa, pb, pc = abs(b - d), abs(a - d), abs(a + b - 2 * d)
                c[i] = (c[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else d)) & 255
            current = bytes(c)
        out[row * stride:(row + 1) * stride] = current
        previous = current
    return np.frombuffer(bytes(out), np.uint8).reshape(height, width, channels)


class RequestLog:
    """A local HTTP proxy that answers nothing and records every request line
    (Chromium is pointed at it, loopback included, so nothing leaves)."""

    # Chromium's own services, contacted whatever the page does.
    BROWSER = ("clients1.google.com", "clients2.google.com", "update.googleapis.com",
               "accounts.google.com", "optimizationguide-pa.googleapis.com",
               "content-autofill.googleapis.com", "safebrowsing.googleapis.com",
               "redirector.gvt1.com", "edgedl.me.gvt1.com")

    def __init__(self):
        self.lines = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    first = connection.recv(4096).split(b"\r\n", 1)[0]
                    self.lines.append(first.decode("latin-1"))
                except OSError:
                    self.lines.append("?")

    def close(self):
        self.server.close()

    @property
    def from_the_page(self):
        """Requests other than Chromium's own."""
        def host(line):
            target = line.split(" ")[1] if " " in line else line
            return re.sub(r"^[a-z]+://", "", target).split("/")[0].split(":")[0]
        return [line for line in self.lines if host(line) not in self.BROWSER]


def chromium(page_path, profile_dir, *, screenshot=None, size=WINDOW):
    """Opens the page with 15 s of virtual time for its scripts; returns
    (the DOM afterwards or "" for a screenshot, requests made by the page)."""
    requests = RequestLog()
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={profile_dir}",
               f"--proxy-server=http://127.0.0.1:{requests.port}",
               "--proxy-bypass-list=<-loopback>",
               f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
               "--virtual-time-budget=15000",
               f"--screenshot={screenshot}" if screenshot else "--dump-dom", f"file://{page_path}"]
    # a time zone west of UTC: dates must still read as UTC days
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "TZ": "America/Los_Angeles"})
    requests.close()
    if screenshot:
        assert os.path.exists(screenshot), f"no screenshot; chromium said:\n{result.stderr[-3000:]}"
    else:
        assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, requests.from_the_page


# Test-only: once every chart is drawn, moves the pointer over the mean log
# likelihood chart at FRACTION of its width (the tooltip then lies in the DOM).
HOVER = """<script>
(function wait() {
  if (!document.documentElement.hasAttribute("data-charts-drawn")) {
    return setTimeout(wait, 100);
  }
  var box = document.querySelector('[data-chart="ll"] svg').getBoundingClientRect();
  var x = box.left + box.width * FRACTION, y = box.top + box.height / 2;
  var target = document.elementFromPoint(x, y);
  ["pointerover", "pointermove"].forEach(function (kind) {
    target.dispatchEvent(new PointerEvent(kind, {clientX: x, clientY: y, bubbles: true}));
  });
})();
</script>"""


def with_hover(page, fraction):
    head, tail = page.rsplit("</body>", 1)
    return head + HOVER.replace("FRACTION", str(fraction)) + "</body>" + tail


def tooltip(dom):
    found = re.search(r'id="vg-tooltip-element"[^>]*>(.*?)</div>', dom, re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split()) if found else ""


def assert_drawn(dom, page):
    charts = len(re.findall(r'data-chart="', markup(page)))
    assert f'data-charts-drawn="{charts}"' in dom, "the charts were not all embedded"
    assert not re.search(r'class="[^"]*\bfailed\b', dom), re.findall(r"could not be drawn[^<]*",
                                                                     dom)
    assert dom.count('class="marks"') == charts     # one Vega SVG per chart


@needs_chromium
def test_dashboard_renders_in_headless_chromium(tmp_path):
    html_path = tmp_path / "dashboard.html"
    png_path = tmp_path / "dashboard.png"
    html_path.write_text(render_dashboard(synthetic_records(), generated_at="2026-12-01 06:00 UTC"),
                         encoding="utf-8")
    _, requests = chromium(html_path, tmp_path / "profile", screenshot=png_path)
    assert requests == []
    width, height, _, _ = png_info(png_path)
    assert (width, height) == WINDOW

    pixels = png_pixels(png_path)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    rgb = pixels[..., :3].reshape(-1, 3)
    colours = np.unique(rgb[:, 0].astype(np.uint32) << 16 | rgb[:, 1].astype(np.uint32) << 8
                        | rgb[:, 2])
    assert len(colours) > 200, "the screenshot looks blank"
    background = np.mean(np.all(rgb == rgb[0], axis=1))
    assert background < 0.9, "the screenshot is mostly one colour"
    # the charts are drawn: line blue, regression red, version purple, bar blue
    for colour in ((0x2f, 0x6d, 0xb0), (0xc2, 0x37, 0x2e), (0x7b, 0x5e, 0xa7), (0xa9, 0xc4, 0xe4)):
        distance = np.abs(rgb.astype(np.int32) - colour).sum(axis=1)
        assert (distance < 30).sum() > 50, f"no pixels of colour {colour}"
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(png_path, os.environ["DASHBOARD_SCREENSHOT"])


@needs_chromium
def test_every_chart_draws_offline_with_tooltips(tmp_path):
    page = render_dashboard(synthetic_records(), generated_at="2026-12-01 06:00 UTC")
    path = tmp_path / "dashboard.html"
    path.write_text(with_hover(page, 0.6), encoding="utf-8")
    dom, requests = chromium(path, tmp_path / "profile")
    assert requests == []
    assert_drawn(dom, page)
    # the nearest day's numbers, its date in UTC and its model version
    text = tooltip(dom)
    assert re.fullmatch(r"date \(UTC\) 2026-11-\d\d mean log likelihood \u22120\.5\d\d "
                        r"trailing 7-day mean \u22120\.5\d\d samples [\d,]+ model version v[12]",
                        text), text


@needs_chromium
def test_the_earliest_and_latest_dates_draw(tmp_path):
    page = render_dashboard(EDGE_PAGES["both ends"], generated_at="x")
    path = tmp_path / "edges.html"
    path.write_text(with_hover(page, 0.12), encoding="utf-8")
    dom, requests = chromium(path, tmp_path / "profile")
    assert requests == []
    assert_drawn(dom, page)
    assert tooltip(dom).startswith("date (UTC) 0001-01-02 mean log likelihood \u22120.600")


@needs_chromium
def test_the_request_log_sees_what_a_page_fetches(tmp_path):
    """The control for `requests == []` above."""
    path = tmp_path / "leaky.html"
    path.write_text('<!DOCTYPE html><html><body><img src="http://example.com/x.png">'
                    '<script>fetch("https://example.org/y")</script></body></html>')
    _, requests = chromium(path, tmp_path / "profile")
    assert any("example.com" in line for line in requests)
    assert any("example.org" in line for line in requests)
