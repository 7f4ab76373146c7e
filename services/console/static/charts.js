// Draw the overview's daily charts with the vendored uPlot (no network).
(function () {
  var el = document.getElementById("chart-data");
  if (!el || !window.uPlot) return;
  var rows = JSON.parse(el.textContent);
  var xs = rows.map(function (r) { return Date.parse(r.day + "T00:00:00Z") / 1000; });
  function yuan(v) { return v == null ? "" : "¥" + (v / 100).toFixed(2); }
  function draw(target, series, axisFmt) {
    var box = document.getElementById(target);
    if (!box) return;
    var data = [xs].concat(series.map(function (s) { return rows.map(function (r) { return s.value(r); }); }));
    var opts = {
      width: box.clientWidth || 600, height: 240,
      series: [{}].concat(series.map(function (s) { return { label: s.label, stroke: s.color, width: 2, fill: s.fill, value: function (u, v) { return axisFmt(v); } }; })),
      axes: [{}, { values: function (u, vals) { return vals.map(axisFmt); }, size: 70 }],
      scales: { x: { time: true } }
    };
    new uPlot(opts, data, box);
  }
  draw("chart-money", [
    { label: "分销销售额", color: "#1f6feb", fill: "rgba(31,111,235,.08)", value: function (r) { return r.distribution_sales_fen; } },
    { label: "佣金成本", color: "#d97706", value: function (r) { return r.commission_fen - r.reversed_fen; } }
  ], yuan);
  draw("chart-people", [
    { label: "新推广员", color: "#16a34a", value: function (r) { return r.new_promoters; } },
    { label: "新客户", color: "#7c3aed", value: function (r) { return r.new_customers; } }
  ], function (v) { return v == null ? "" : String(v); });
})();
