// A small line chart in SVG (throughput over time): no library, no inline style.
import { h, s } from "./dom.js";
import { clock, rate } from "./format.js";

const W = 600;
const H = 150;
const PAD = { left: 40, right: 8, top: 10, bottom: 22 };

/** points: [{t (unix s), perSecond}]; null when there is too little to draw. */
export function lineChart(points, { label = "requests/s" } = {}) {
  if (points.length < 2) return null;
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  const top = Math.max(...points.map((p) => p.perSecond)) * 1.15 || 1;
  const x = (t) => PAD.left + ((t - t0) / Math.max(t1 - t0, 1)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const line = points.map((p) => `${x(p.t).toFixed(1)},${y(p.perSecond).toFixed(1)}`).join(" ");
  const area = `${x(t0).toFixed(1)},${y(0)} ${line} ${x(t1).toFixed(1)},${y(0)}`;
  const grid = [0, 0.5, 1].map((f) => {
    const v = (top / 1.15) * f;
    return [
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid-line" }),
      s("text", { x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, rate(v)),
    ];
  });
  const span = Math.round(t1 - t0);
  return h("figure", { class: "chart" },
    s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${label} over the last ${span} s`, preserveAspectRatio: "none" },
      grid,
      s("polygon", { points: area, class: "area" }),
      s("polyline", { points: line, class: "line" }),
      s("text", { x: PAD.left, y: H - 4, class: "axis" }, clock(t0).slice(11)),
      s("text", { x: W - PAD.right, y: H - 4, class: "axis", "text-anchor": "end" }, clock(t1).slice(11))),
    h("figcaption", { class: "muted small" }, label));
}
