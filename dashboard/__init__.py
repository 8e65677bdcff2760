"""The monitoring dashboard: one self-contained HTML page of the monitor's
daily metric records (``render_dashboard``).

Layout: page.py decides what the page says (verdict, headline cards, tables)
and renders templates/dashboard.html (Jinja2, autoescaped: exercise names
and model versions are untrusted); data.py turns the parsed records
(models.regressions, where the statistics live) into chart rows; charts.py
holds the chart specifications; vega.py the inlined JavaScript.

Charts: Vega-Lite, specified with Altair and drawn in the browser by Vega,
Vega-Lite and vega-embed, whose JavaScript is inlined in the page (from
vl-convert-python), so the file opens offline, from a bucket or as a mail
attachment, and fetches nothing. Chosen over matplotlib (static SVG) for the
reader: hovering any day shows its exact numbers, a picker shows any of the
busiest exercises or those that got worse, and the small multiples switch
between their own and one shared y scale, while the specs stay short,
declarative and validated against the Vega-Lite schema. The price is weight:
about 0.9 MB of script per page, the charts need JavaScript (the numbers and
tables do not), and vl-convert-python is a 33 MB wheel.
"""

from dashboard.page import render_dashboard

__all__ = ["render_dashboard"]
