// The account's batches, live: status, progress, requests per second, ETA, why a batch waits.
import { api, enc, qs } from "../api.js";
import { h, fill } from "../dom.js";
import { DASH, clock, int, rate, relative, shortId, untilText } from "../format.js";
import { every, problemBar } from "../live.js";
import { eta, observe, requestsPerSecond } from "../progress.js";
import { countsLine, isActive, progressBar, statusPill, waitingNote } from "../status.js";

const PAGE_SIZE = 50;
const COLUMNS = ["Batch", "Status", "Progress", "Req/s", "ETA", "Model", "Created"];

/** A line that says what the batch is: its metadata's description (or first entry), as plain text. */
export function describe(batch) {
  const meta = batch.metadata || {};
  if (meta.description) return meta.description;
  const first = Object.entries(meta)[0];
  return first ? `${first[0]}: ${first[1]}` : null;
}

function cells(batch) {
  const perSecond = requestsPerSecond(batch);
  const until = eta(batch);
  const description = describe(batch);
  return [
    h("td", { "data-label": "Batch", class: "batch-cell" },
      h("a", { href: `#/batches/${enc(batch.id)}`, class: "mono batch-link", title: batch.id }, shortId(batch.id)),
      description ? h("div", { class: "desc", "data-role": "description" }, description) : null),
    h("td", { "data-label": "Status" }, statusPill(batch), waitingNote(batch)),
    h("td", { "data-label": "Progress", class: "progress-cell" }, progressBar(batch), countsLine(batch)),
    h("td", { "data-label": "Req/s", class: "num", "data-role": "rate" }, isActive(batch) || perSecond ? rate(perSecond) : DASH),
    h("td", { "data-label": "ETA", "data-role": "eta" }, untilText(until)),
    h("td", { "data-label": "Model", class: "model" }, batch.model || DASH),
    h("td", { "data-label": "Created", title: clock(batch.created_at) }, relative(batch.created_at)),
  ];
}

function summary(list) {
  const by = {};
  for (const b of list) by[b.status] = (by[b.status] || 0) + 1;
  const running = (by.in_progress || 0) + (by.validating || 0) + (by.finalizing || 0) + (by.cancelling || 0);
  const parts = [`${int(list.length)} shown`, running ? `${int(running)} active` : null,
    by.completed ? `${int(by.completed)} completed` : null, by.failed ? `${int(by.failed)} failed` : null,
    by.cancelled ? `${int(by.cancelled)} cancelled` : null, by.expired ? `${int(by.expired)} expired` : null];
  return parts.filter(Boolean).join(" · ");
}

function emptyState() {
  return h("div", { class: "empty", "data-role": "empty" },
    h("h2", {}, "No batches yet"),
    h("p", {}, "Submit a JSONL file of requests and it shows up here while it runs."),
    h("pre", { class: "code" }, "batchq submit requests.jsonl --wait"),
    h("p", { class: "muted" }, "or, with the openai SDK: client.files.create(…) then client.batches.create(…)"));
}

export function render(main, _route) {
  const problem = problemBar();
  const head = h("div", { class: "page-head" }, h("h1", {}, "Batches"), h("div", { class: "summary muted" }));
  const tbody = h("tbody");
  const table = h("table", { class: "grid batches", id: "batches" },
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { class: c === "Req/s" ? "num" : null, scope: "col" }, c)))),
    tbody);
  const wrap = h("div", { class: "card table-card" }, table);
  const empty = h("div");
  const more = h("button", { class: "btn", hidden: true, id: "older" }, "Show older batches");
  fill(main, h("section", { class: "page" }, head, problem.el, wrap, empty, h("div", { class: "more" }, more)));

  const rows = new Map();
  let older = []; // pages loaded with "Show older": not polled, they are mostly final
  let hasMore = false;
  let anyActive = true;

  const draw = (list) => {
    fill(head.querySelector(".summary"), list.length ? summary(list) : "");
    wrap.hidden = !list.length;
    fill(empty, list.length ? null : emptyState());
    const seen = new Set();
    list.forEach((batch, i) => {
      seen.add(batch.id);
      let row = rows.get(batch.id);
      if (!row) {
        row = h("tr", { class: "row-link", "data-batch-id": batch.id });
        row.addEventListener("click", (event) => {
          if (!event.target.closest("a")) location.hash = `#/batches/${enc(batch.id)}`;
        });
        rows.set(batch.id, row);
      }
      row.dataset.status = batch.status;
      row.replaceChildren(...cells(batch));
      if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
    });
    for (const [id, row] of rows) if (!seen.has(id)) { row.remove(); rows.delete(id); }
    more.hidden = !hasMore;
  };

  const refresh = async () => {
    try {
      const page = await api(`/v1/batches${qs({ limit: PAGE_SIZE })}`);
      page.data.forEach((b) => observe(b));
      const ids = new Set(page.data.map((b) => b.id));
      older = older.filter((b) => !ids.has(b.id));
      if (!older.length) hasMore = page.has_more;
      anyActive = page.data.some(isActive);
      problem.clear();
      draw([...page.data, ...older]);
    } catch (error) {
      if (error.status !== 401) problem.show(error);
    }
  };

  more.addEventListener("click", async () => {
    const last = older.length ? older[older.length - 1].id : [...rows.keys()].pop();
    try {
      const page = await api(`/v1/batches${qs({ limit: PAGE_SIZE, after: last })}`);
      older = [...older, ...page.data];
      hasMore = page.has_more;
      await refresh();
    } catch (error) {
      problem.show(error);
    }
  });

  return every(() => (anyActive ? 1000 : 2000), refresh);
}
