// The operator's view, from /metrics (read with the metrics token): routes, queues, accounts, storage, workers.
// Series that issue 23 adds (batchq_route_*, batchq_workers) show as soon as the server exports them.
import { credentials, readMetrics } from "../api.js";
import { h, fill } from "../dom.js";
import { DASH, bytes, int, rate } from "../format.js";
import { every, problemBar } from "../live.js";
import { byLabel, parseMetrics, scalar } from "../metrics.js";

/** Per-route series by name, with their column headings, in this order; other batchq_route_* series follow. */
const ROUTE_SERIES = [
  ["batchq_route_in_flight_cap", "Effective cap"],
  ["batchq_route_max_in_flight", "Configured cap"],
  ["batchq_route_in_flight", "In flight"],
  ["batchq_route_engine_waiting", "Engine waiting"],
  ["batchq_route_engine_running", "Engine running"],
  ["batchq_route_window_open", "Window"],
];
const WORKER_SERIES = ["batchq_workers", "batchq_worker_count"];

function tokenForm(onSaved, message) {
  const input = h("input", { id: "metrics-token", type: "password", autocomplete: "off", placeholder: "BATCHQ_METRICS_TOKEN" });
  const form = h("form", { class: "card token-form", id: "metrics-form" },
    h("h2", {}, "Metrics token"),
    h("p", { class: "muted" }, message),
    h("label", { for: "metrics-token" }, "Token"),
    input,
    h("button", { class: "btn primary", type: "submit" }, "Show metrics"),
    h("p", { class: "muted small" }, "Kept in this tab only and sent as a Bearer header to /metrics."));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    credentials.metricsToken = input.value.trim() || null;
    onSaved();
  });
  return form;
}

function stat(label, value, role, note) {
  return h("div", { class: "tile" }, h("div", { class: "tile-label" }, label),
    h("div", { class: "tile-value", "data-role": role }, value), note ? h("div", { class: "muted small" }, note) : null);
}

function table(id, headings, rows, emptyText) {
  if (!rows.length) return h("p", { class: "muted empty-small" }, emptyText);
  return h("table", { class: "grid compact", id },
    h("thead", {}, h("tr", {}, headings.map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((v, i) => h("td", { class: i ? "num" : "mono", "data-label": headings[i] }, v))))));
}

function routesCard(series) {
  const names = [...series.keys()].filter((n) => n.startsWith("batchq_route_"));
  if (!names.length) {
    return h("div", { class: "card span-2" }, h("h2", {}, "Upstream routes"),
      h("p", { class: "muted empty-small", "data-role": "routes-missing" },
        "This server does not export per-route figures yet (effective in-flight cap, in flight, the engine's queue, the window)."));
  }
  const known = ROUTE_SERIES.filter(([n]) => series.has(n));
  const other = names.filter((n) => !ROUTE_SERIES.some(([k]) => k === n)).map((n) => [n, n.replace("batchq_route_", "").replaceAll("_", " ")]);
  const columns = [...known, ...other];
  const routes = new Set(names.flatMap((n) => series.get(n).map((s) => s.labels.route)));
  const rows = [...routes].sort().map((route) => [route ?? DASH, ...columns.map(([n]) => {
    const v = byLabel(series, n, "route").get(route);
    if (v === undefined) return DASH;
    return n === "batchq_route_window_open" ? (v ? "open" : "closed") : int(v);
  })]);
  return h("div", { class: "card span-2" }, h("h2", {}, "Upstream routes"),
    table("routes", ["Route", ...columns.map(([, label]) => label)], rows, ""));
}

export function render(main) {
  const problem = problemBar();
  const body = h("div", { class: "detail-grid" });
  const tokenButton = h("button", { class: "btn small", id: "metrics-token-button", type: "button" }, "Metrics token…");
  const head = h("div", { class: "page-head" }, h("h1", {}, "Operator"),
    h("div", { class: "head-status" }, h("span", { class: "summary muted" }, "from /metrics, every 2 s"), tokenButton));
  fill(main, h("section", { class: "page" }, head, problem.el, body));
  let previous = null; // {t, total} for requests/s across every account

  const draw = (series) => {
    const total = [...byLabel(series, "batchq_requests_total", "outcome").values()].reduce((a, b) => a + b, 0);
    const now = Date.now() / 1000;
    const perSecond = previous && now > previous.t ? Math.max(0, (total - previous.total) / (now - previous.t)) : null;
    previous = { t: now, total };
    const workers = WORKER_SERIES.map((n) => scalar(series, n)).find((v) => v !== null);
    const queues = byLabel(series, "batchq_queue_depth", "queue");
    const waiting = byLabel(series, "batchq_account_lines_waiting", "account");
    const inFlight = byLabel(series, "batchq_account_lines_in_flight", "account");
    const completed = byLabel(series, "batchq_account_lines_total", "account", { outcome: "completed" });
    const failed = byLabel(series, "batchq_account_lines_total", "account", { outcome: "failed" });
    const storage = byLabel(series, "batchq_storage_bytes", "account");
    const accounts = [...new Set([...waiting.keys(), ...inFlight.keys(), ...completed.keys()])].sort();
    const outcomes = byLabel(series, "batchq_requests_total", "outcome");
    fill(body,
      h("div", { class: "card span-2" }, h("div", { class: "tiles" },
        stat("Workers", workers === undefined ? DASH : int(workers), "workers", workers === undefined ? "not exported yet" : null),
        stat("Active batches", int(scalar(series, "batchq_active_batches")), "active-batches"),
        stat("Requests/s", rate(perSecond), "requests-rate", "all accounts"),
        stat("Lines waiting", int([...waiting.values()].reduce((a, b) => a + b, 0)), "lines-waiting"),
        stat("Lines in flight", int([...inFlight.values()].reduce((a, b) => a + b, 0)), "lines-in-flight"))),
      routesCard(series),
      h("div", { class: "card" }, h("h2", {}, "Queues"),
        table("queues", ["Queue", "Messages"], [...queues].map(([q, v]) => [q, int(v)]), "No queue figures.")),
      h("div", { class: "card" }, h("h2", {}, "Requests by outcome"),
        table("outcomes", ["Outcome", "Lines"], [...outcomes].sort().map(([o, v]) => [o, int(v)]), "No request has ended yet.")),
      h("div", { class: "card span-2" }, h("h2", {}, "Accounts"),
        table("accounts", ["Account", "Waiting", "In flight", "Completed", "Failed", "Storage"],
          accounts.map((a) => [a, int(waiting.get(a) || 0), int(inFlight.get(a) || 0), int(completed.get(a) || 0), int(failed.get(a) || 0), bytes(storage.get(a) || 0)]),
          "No account has run a batch yet.")));
  };

  let stop = null;
  const start = () => {
    if (stop) stop();
    stop = every(2000, async () => {
      try {
        const series = parseMetrics(await readMetrics());
        problem.clear();
        draw(series);
      } catch (error) {
        if (error.status === 401 || error.status === 403) {
          stop();
          const message = credentials.metricsToken
            ? "That token was not accepted. Enter the server's BATCHQ_METRICS_TOKEN."
            : "This server's /metrics needs its metrics token (BATCHQ_METRICS_TOKEN).";
          credentials.metricsToken = null;
          fill(body, tokenForm(start, message));
        } else problem.show(error);
      }
    });
  };
  tokenButton.addEventListener("click", () => {
    if (stop) stop();
    fill(body, tokenForm(start, "Enter the server's BATCHQ_METRICS_TOKEN (leave it empty to read /metrics without one, from this machine)."));
  });
  start();
  return () => stop && stop();
}
