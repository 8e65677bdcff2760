// Draws every <div data-chart="id"> with vega-embed (inlined above) from the
// page's JSON: payload.charts[id] = {spec, data: [dataset names], only:
// {dataset: exercise} when the chart needs one exercise's rows}. Wires the
// exercise picker and the small multiples' "same y scale" switch to the
// charts' signals (exercise, shared_y). Nothing is fetched.
(function () {
  "use strict";
  var payload = JSON.parse(document.getElementById("dashboard-data").textContent);
  var views = {};

  // Vega-Lite 6.4 copies a nearest-day tooltip onto Voronoi cells but reads
  // its text fields from the cell rather than the cell's datum, showing
  // "undefined" (vega-lite#4859; fixed by vega-lite#9707, after 6.4).
  function fixVoronoiTooltips(scope) {
    (scope.marks || []).forEach(function (mark) {
      var update = mark.encode && mark.encode.update;
      if (update && update.isVoronoi && update.tooltip && update.tooltip.signal) {
        update.tooltip.signal = update.tooltip.signal.replace(/(^|[^.\w])datum\[/g,
                                                              "$1datum.datum[");
      }
      fixVoronoiTooltips(mark);
    });
    return scope;
  }

  function embed(element) {
    var id = element.getAttribute("data-chart");
    var chart = payload.charts[id];
    var spec = Object.assign({}, chart.spec, {datasets: {}});
    chart.data.forEach(function (name) {   // a copy per view: Vega annotates its rows
      var rows = payload.datasets[name];
      var only = chart.only && chart.only[name];
      if (only !== undefined) {
        rows = rows.filter(function (row) { return row.exercise === only; });
      }
      spec.datasets[name] = JSON.parse(JSON.stringify(rows));
    });
    return vegaEmbed(element, spec, {renderer: "svg", actions: false, config: payload.config,
                                     patch: fixVoronoiTooltips})
      .then(function (result) {
        views[id] = result.view;
        element.style.minHeight = "";
      })
      .catch(function (error) {
        element.classList.add("failed");
        element.textContent = "This chart could not be drawn: " + error;
      });
  }

  function viewsStartingWith(prefix) {
    return Object.keys(views).filter(function (id) { return id.indexOf(prefix) === 0; })
      .map(function (id) { return views[id]; });
  }

  var picker = document.getElementById("exercise-picker");
  var shared = document.getElementById("shared-y");

  function offered(name) {
    return picker !== null && Array.prototype.some.call(picker.options, function (option) {
      return option.value === name;
    });
  }

  function pick(name) {
    picker.value = name;
    viewsStartingWith("picked-").forEach(function (view) {
      view.signal("exercise", name).runAsync();
    });
  }

  function shareScale() {
    viewsStartingWith("panel-").forEach(function (view) {
      view.signal("shared_y", shared.checked).runAsync();
    });
  }

  var drawn = Array.prototype.map.call(document.querySelectorAll("[data-chart]"), embed);
  Promise.all(drawn).then(function () {
    if (picker !== null) {
      picker.addEventListener("change", function () { pick(picker.value); });
      pick(picker.value);   // a reloaded page may keep an earlier choice
      document.querySelectorAll("[data-pick]").forEach(function (element) {
        var name = element.getAttribute("data-pick");
        if (!offered(name)) { return; }
        element.classList.add("pickable");
        element.addEventListener("click", function () {
          pick(name);
          document.getElementById("picker").scrollIntoView({behavior: "smooth"});
        });
      });
    }
    if (shared !== null) {
      shared.addEventListener("change", shareScale);
      shareScale();
    }
    document.documentElement.setAttribute("data-charts-drawn", String(drawn.length));
  });
}());
