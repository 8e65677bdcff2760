"""The dashboard's charts as Vega-Lite specifications, built with Altair.

Every chart reads named datasets (dashboard.data) that the page holds once;
``spec(chart)`` returns the Vega-Lite dict without data or config, and the
page's script hands each chart its datasets and ``CONFIG`` when it embeds it.
Time charts share one x scale over the period (UTC days, a day's point at its
midnight, the domain half a day wider on both sides), dashed purple rules
where the model version changes, and a hover rule whose tooltip lists the
nearest day's numbers.
"""

import copy
from typing import List, Optional, Sequence, Tuple

import altair as alt

from dashboard.data import DAY_MS, Span, day_start

# A light, neutral palette (colour-blind safe pair: blue/orange), as in the CSS.
MUTED = "#5f6b7a"
GRID = "#e6e9ee"
AXIS = "#9aa5b1"
BLUE = "#2f6db0"
BLUE_LIGHT = "#a9c4e4"
ORANGE = "#d8772a"
RED = "#c2372e"
PURPLE = "#7b5ea7"
GREY = "#8a94a3"
FONT = ('system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","Noto Sans",'
        '"DejaVu Sans","Liberation Sans",Arial,sans-serif')

# Vega-Lite config shared by every chart (passed to vega-embed).
CONFIG = {
    "font": FONT,
    "background": "transparent",
    "view": {"stroke": None},
    "axis": {"labelColor": MUTED, "titleColor": MUTED, "labelFontSize": 11.5,
             "titleFontSize": 11.5, "titleFontWeight": "normal", "gridColor": GRID,
             "domainColor": AXIS, "tickColor": AXIS, "labelPadding": 4},
    "axisX": {"grid": False, "labelOverlap": True, "tickSize": 4},
    "axisY": {"domain": False, "ticks": False, "titlePadding": 10, "labelOverlap": True},
    "line": {"strokeJoin": "round", "strokeCap": "round"},
}

# Tick labels by the tick's date: "Nov 3" (also on the first of a month), the
# year alone on January 1 ("0001" for year 1). Ticks fall on midnights
# (tickMinStep one day), so the hour formats are a fallback only.
DATE_FORMATS = {"year": "%Y", "month": "%b %-d", "week": "%b %-d", "date": "%b %-d",
                "hours": "%H:%M", "minutes": "%H:%M"}

# Counts: "8,000", and "12k", "1.2M" from ten thousand up.
COUNT_LABEL = "datum.value >= 10000 ? format(datum.value, '.3~s') : format(datum.value, ',')"


def spec(chart) -> dict:
    """The chart as a Vega-Lite dict. Not validated here (Altair's schema
    validation takes ~0.3 s a chart); the tests validate every chart of a page."""
    out = chart.to_dict(validate=False)
    out.pop("config", None)     # CONFIG is applied by the page
    return out


def _x(span: Span, compact: bool = False, title: Optional[str] = None) -> alt.X:
    lo, hi = span.domain
    first, last = (day_start(day) for day in (span.first, span.last))
    if compact:     # the first and last day only
        axis = alt.Axis(title=None, values=[first, last] if span.days > 1 else [first],
                        format="%b %-d" if span.one_year else "%b %-d, %Y",
                        labelFlush=True, labelFontSize=11, labelOverlap=False)
    else:
        caption = "date (UTC)" + (f", {span.first.year:04d}" if span.one_year else "")
        # two days or less: their own ticks (automatic ticks would add hours)
        values = sorted({first, last}) if span.days <= 2 else alt.Undefined
        axis = alt.Axis(title=title or caption, format=DATE_FORMATS, tickMinStep=DAY_MS,
                        values=values, titleAlign="right", titleAnchor="end")
    return alt.X("t:T", scale=alt.Scale(type="utc", domain=[lo, hi], nice=False, padding=0),
                 axis=axis)


def _y(field: str, title: Optional[str], domain=None, fmt: Optional[str] = None,
       compact: bool = False) -> alt.Y:
    """A y encoding; `domain` is [low, high] or a Vega expression."""
    scale = {"zero": False, "nice": True}
    if isinstance(domain, str):
        scale["domain"] = alt.ExprRef(expr=domain)
    elif domain is not None:
        scale["domain"] = list(domain)
    # a fixed label width lines up the plots of stacked charts and panels
    axis = {"title": title, "tickCount": 3 if compact else 5,
            "minExtent": 38 if compact else 48, "maxExtent": 38 if compact else 80}
    if fmt:
        axis["format"] = fmt
    if compact:     # small multiples: fewer, larger labels without trailing zeros
        axis["labelFontSize"] = 11
        axis["format"] = fmt or ".2~f"
    return alt.Y(f"{field}:Q", scale=alt.Scale(**scale), axis=alt.Axis(**axis))


# A tooltip line: (field, title, d3 number format; "" for a text field).
Tip = Tuple[str, str, str]


def _tip(field: str, title: str, fmt: str = "") -> Tip:
    return field, title, fmt


def _tooltip(chart: alt.Chart, tips: Sequence[Tip]) -> Tuple[alt.Chart, List[alt.Tooltip]]:
    """Tooltip lines as text: numbers formatted, "n/a" where missing (a plain
    format would print null as "null")."""
    lines = []
    for field, title, fmt in tips:
        if fmt:
            expression = f"isValid(datum.{field}) ? format(datum.{field}, '{fmt}') : 'n/a'"
            chart = chart.transform_calculate(**{f"{field}_text": expression})
            field = f"{field}_text"
        lines.append(alt.Tooltip(f"{field}:N", title=title))
    return chart, lines


DATE_TIP = _tip("date", "date (UTC)")
VERSION_TIP = _tip("version", "model version")


def _line(data: alt.Data, span: Span, field: str, y: alt.Y, color: str, *, width: float = 2,
          dash: Sequence[float] = (), markers: bool = True, compact: bool = False,
          where: str = "") -> List[alt.Chart]:
    """A line through the days with a value, broken at missing days; markers
    on lone days, and on every day when days are at least 12 px wide (not in
    compact charts)."""
    test = f"isValid(datum.{field})" + (f" && {where}" if where else "")
    base = alt.Chart(data).transform_filter(test)
    line = base.mark_line(color=color, strokeWidth=width, strokeDash=list(dash)).encode(
        x=_x(span, compact), y=y, detail=alt.Detail(f"{field}_seg:N"))
    if not markers:
        return [line]
    shown = f"datum.{field}_lone" + ("" if compact else f" || width / {span.days} >= 12")
    points = base.mark_point(filled=True, color=color, stroke="#fff", strokeWidth=1,
                             size=22 if compact else 40).encode(
        x=_x(span, compact), y=y,
        opacity=alt.condition(shown, alt.value(1), alt.value(0)))
    return [line, points]


def _versions(span: Span, compact: bool = False) -> List[alt.Chart]:
    data = alt.Chart(alt.Data(name="versions"))
    rule = data.mark_rule(color=PURPLE, strokeDash=[4, 3], strokeWidth=1.2).encode(
        x=_x(span, compact), tooltip=alt.Tooltip("caption:N", title="version change"))
    if compact:
        return [rule]
    label = data.mark_text(align="left", baseline="bottom", dx=4, color=PURPLE,
                           fontWeight=600, fontSize=11.5, limit=220).encode(
        x=_x(span), y=alt.YValue(alt.ExprRef(expr="-6 - 15 * (1 - datum.row)")),
        text="label:N")
    return [rule, label]


def _hover(data: alt.Data, span: Span, tips: Sequence[Tip], where: str = "",
           compact: bool = False) -> alt.Chart:
    """A rule on the day nearest the pointer, with that day's tooltip (the
    page's script corrects how Vega-Lite 6.4 reads text fields there)."""
    nearest = alt.selection_point(name="hover", fields=["t"], nearest=True, on="pointerover",
                                  clear="pointerout", empty=False)
    base = alt.Chart(data)
    if where:
        base = base.transform_filter(where)
    base, tooltip = _tooltip(base, tips)
    return base.mark_rule(color=AXIS, strokeWidth=1).encode(
        x=_x(span, compact), opacity=alt.condition(nearest, alt.value(0.9), alt.value(0)),
        tooltip=tooltip).add_params(nearest)


def _layer(*layers, height: int, label: str, params=()) -> alt.LayerChart:
    flat = [chart for layer in layers for chart in (layer if isinstance(layer, list) else [layer])]
    chart = alt.layer(*flat).properties(
        width="container", height=height, description=label,
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
    return chart.add_params(*params) if params else chart


def _bar_width(span: Span) -> alt.ExprRef:
    """72% of a day in pixels, 2 to 40 px (still visible over centuries)."""
    return alt.ExprRef(expr=f"max(2, min(40, 0.72 * width / {span.days}))")


LL_FORMAT = ".3f"
# Layers of one chart repeat the y title: a layer without one hides it.
LL_TITLE = "log likelihood (nats)"


def log_likelihood(span: Span, trailing_days: int, domain) -> dict:
    data = alt.Data(name="overall")
    y = _y("ll", LL_TITLE, domain)
    tooltip = [DATE_TIP, _tip("ll", "mean log likelihood", LL_FORMAT),
               _tip("trailing", f"trailing {trailing_days}-day mean", LL_FORMAT),
               _tip("samples", "samples", ","), VERSION_TIP]
    return spec(_layer(
        _versions(span),
        _line(data, span, "trailing", _y("trailing", LL_TITLE, domain), GREY, width=1.6,
              dash=(5, 4), markers=False),
        _line(data, span, "ll", y, BLUE),
        _hover(data, span, tooltip),
        height=270, label="mean log likelihood per day, all exercises"))


def _bars(data: alt.Data, span: Span, where: str, tick_count: int) -> alt.Chart:
    """Samples per day as bars centred on the days."""
    bars, tooltip = _tooltip(alt.Chart(data).transform_filter(where + "datum.samples > 0"),
                             [DATE_TIP, _tip("samples", "samples", ","), VERSION_TIP])
    return bars.mark_bar(
        color=BLUE_LIGHT, cornerRadiusTopLeft=1, cornerRadiusTopRight=1,
        width=_bar_width(span)).encode(
        x=_x(span),
        y=alt.Y("samples:Q", axis=alt.Axis(title="attempts", labelExpr=COUNT_LABEL,
                                           tickCount=tick_count, minExtent=48)),
        tooltip=tooltip)


def samples(span: Span) -> dict:
    return spec(_layer(_versions(span), _bars(alt.Data(name="overall"), span, "", 4),
                       height=170, label="samples per day, all exercises"))


def correct(span: Span, domain) -> dict:
    data = alt.Data(name="overall")
    y = _y("observed", "fraction correct", domain, ".0%")
    tooltip = [DATE_TIP, _tip("observed", "observed correct", ".1%"),
               _tip("predicted", "mean predicted", ".1%"), _tip("samples", "samples", ",")]
    return spec(_layer(
        _versions(span),
        _line(data, span, "observed", y, BLUE),
        _line(data, span, "predicted", _y("predicted", "fraction correct", domain, ".0%"), ORANGE,
              dash=(6, 3)),
        _hover(data, span, tooltip),
        height=230, label="observed and predicted fraction correct per day, all exercises"))


def auc(span: Span, domain) -> dict:
    data = alt.Data(name="overall")
    tooltip = [DATE_TIP, _tip("auc", "AUC", ".3f"), _tip("samples", "samples", ",")]
    return spec(_layer(
        _versions(span),
        _line(data, span, "auc", _y("auc", "AUC", domain, ".2f"), BLUE),
        _hover(data, span, tooltip, where="isValid(datum.auc)"),
        height=230, label="AUC per day, all exercises"))


def panel(span: Span, shared, shared_y: bool) -> dict:
    """A small multiple: one exercise's mean log likelihood per day. One spec
    serves every panel (building one takes Altair ~0.3 s): ``panel_params``
    sets which exercise (``panel_exercise``) and its own y range
    (``own_range``); ``shared_y`` switches to ``shared_range``, the range of
    all panels."""
    data = alt.Data(name="exercises")
    where = "datum.exercise === panel_exercise"    # a parameter: names are data, not code
    y = _y("ll", None, "shared_y ? shared_range : own_range", compact=True)
    red = alt.Chart(data).transform_filter(f"{where} && datum.red")
    tooltip = [DATE_TIP, _tip("ll", "mean log likelihood", LL_FORMAT),
               _tip("samples", "samples", ",")]
    return spec(_layer(
        _versions(span, compact=True),
        _line(data, span, "ll", y, BLUE, width=1.6, compact=True, where=where),
        red.mark_line(color=RED, strokeWidth=2.2).encode(x=_x(span, True), y=y),
        red.transform_filter("datum.red_point").mark_point(
            filled=True, color=RED, size=36, stroke="#fff", strokeWidth=1).encode(
            x=_x(span, True), y=y),
        _hover(data, span, tooltip, where=where + " && isValid(datum.ll)", compact=True),
        height=110, label="mean log likelihood per day of one exercise",
        params=[alt.param(name="shared_y", value=bool(shared_y)),
                alt.param(name="shared_range", value=list(shared)),
                alt.param(name="own_range", value=list(shared)),
                alt.param(name="panel_exercise", value="")]))


def panel_params(panel_spec: dict, exercise: str, own) -> dict:
    """The panel spec for one exercise (a copy with its parameter values)."""
    out = copy.deepcopy(panel_spec)
    values = {"panel_exercise": exercise, "own_range": list(own)}
    for param in out["params"]:
        if param["name"] in values:
            param["value"] = values[param["name"]]
    out["description"] = f"mean log likelihood per day, {exercise}"
    return out


def picked(span: Span, trailing_days: int, exercise: str) -> Tuple[dict, dict]:
    """Log likelihood and samples of the exercise the picker names (the signal
    ``exercise``, set by the page's <select>)."""
    data = alt.Data(name="exercises")
    where = "datum.exercise === exercise"
    tooltip = [DATE_TIP, _tip("ll", "mean log likelihood", LL_FORMAT),
               _tip("trailing", f"trailing {trailing_days}-day mean", LL_FORMAT),
               _tip("samples", "samples", ","),
               _tip("observed", "observed correct", ".1%"),
               _tip("predicted", "mean predicted", ".1%"), VERSION_TIP]
    param = alt.param(name="exercise", value=exercise)
    ll = _layer(
        _versions(span),
        _line(data, span, "trailing", _y("trailing", LL_TITLE), GREY, width=1.6, dash=(5, 4),
              markers=False, where=where),
        _line(data, span, "ll", _y("ll", LL_TITLE), BLUE, where=where),
        _hover(data, span, tooltip, where=where + " && isValid(datum.ll)"),
        height=230, label="mean log likelihood per day of the picked exercise", params=[param])
    counts = _layer(_versions(span), _bars(data, span, where + " && ", 3), height=110,
                    label="samples per day of the picked exercise", params=[param])
    return spec(ll), spec(counts)


def calibration() -> dict:
    data = alt.Data(name="calibration")
    unit = alt.Scale(domain=[0, 1], nice=False, zero=False)
    x = alt.X("x:Q", scale=unit, axis=alt.Axis(title="mean predicted P(correct)", grid=True,
                                               tickCount=5, format=".1f"))
    y = alt.Y("y:Q", scale=unit, axis=alt.Axis(title="observed fraction correct",
                                               tickCount=5, format=".1f"))
    colors = alt.Scale(domain=["whole period", "latest day"], range=[BLUE, ORANGE])
    diagonal = alt.Chart(alt.Data(values=[{"x": 0, "y": 0}, {"x": 1, "y": 1}])).mark_line(
        color=GREY, strokeWidth=1.2, strokeDash=[5, 4]).encode(x=x, y=y)
    base, tooltip = _tooltip(alt.Chart(data), [
        _tip("series", "series"), _tip("range", "predicted bin"), _tip("samples", "samples", ","),
        _tip("predicted", "mean predicted", ".3f"), _tip("observed", "observed correct", ".3f")])
    lines = base.mark_line(strokeWidth=1.5, strokeOpacity=0.75).encode(
        x=x, y=y, color=alt.Color("series:N", scale=colors, legend=None),
        detail="series:N", order="x:Q")
    points = base.mark_point(strokeWidth=1.6, opacity=1).encode(
        x=x, y=y, color=alt.Color("series:N", scale=colors, legend=None),
        fill=alt.condition("datum.series === 'whole period'", alt.value(BLUE), alt.value("#fff")),
        fillOpacity=alt.condition("datum.series === 'whole period'", alt.value(0.85),
                                  alt.value(1)),
        size=alt.Size("area:Q", scale=None),
        tooltip=tooltip)
    chart = alt.layer(diagonal, lines, points).properties(
        width="container", height="container",
        description="calibration: observed versus predicted fraction correct",
        autosize=alt.AutoSizeParams(type="fit", contains="padding"))
    return spec(chart)
