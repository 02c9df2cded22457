// The account's webhook endpoints and each one's delivery log.
import { api, enc, qs } from "../api.js";
import { h, fill } from "../dom.js";
import { DASH, clock, int, relative } from "../format.js";
import { every, problemBar } from "../live.js";

function deliveries(list) {
  if (!list.length) return h("p", { class: "muted empty-small" }, "No deliveries yet: events are sent when a batch ends.");
  return h("table", { class: "grid compact", "data-role": "deliveries" },
    h("thead", {}, h("tr", {}, ["Event", "Batch", "Status", "Attempts", "Last answer", "When"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, list.map((d) => h("tr", {},
      h("td", { "data-label": "Event", class: "mono" }, d.event_type),
      h("td", { "data-label": "Batch" }, h("a", { class: "mono", href: `#/batches/${enc(d.data.id)}` }, d.data.id)),
      h("td", { "data-label": "Status" }, h("span", { class: ["pill", `dl-${d.status}`] }, d.status)),
      h("td", { "data-label": "Attempts", class: "num" }, int(d.attempts)),
      h("td", { "data-label": "Last answer" }, d.last_response_code ? `HTTP ${d.last_response_code}` : d.last_error || DASH),
      h("td", { "data-label": "When", title: clock(d.delivered_at || d.last_attempt_at || d.created_at) },
        d.status === "pending" && d.next_attempt_at ? `retry ${relative(d.next_attempt_at)}` : relative(d.delivered_at || d.last_attempt_at || d.created_at)),
    ))));
}

function endpointCard(endpoint, log) {
  return h("div", { class: "card", "data-endpoint-id": endpoint.id },
    h("div", { class: "endpoint-head" },
      h("div", {}, h("div", { class: "endpoint-url mono", "data-role": "url" }, endpoint.url),
        endpoint.name ? h("div", { class: "muted" }, endpoint.name) : null),
      h("div", { class: "muted small" }, `created ${relative(endpoint.created_at)}`)),
    h("div", { class: "tags" }, (endpoint.events || []).map((e) => h("span", { class: "tag" }, e)),
      h("span", { class: "muted small mono" }, `secret ${endpoint.signing_secret_hint || "hidden"}`)),
    h("h3", {}, "Deliveries"),
    deliveries(log));
}

export function render(main) {
  const problem = problemBar();
  const list = h("div", { class: "stack" });
  fill(main, h("section", { class: "page" }, h("div", { class: "page-head" }, h("h1", {}, "Webhook endpoints")), problem.el, list));
  return every(5000, async () => {
    try {
      const page = await api(`/v1/webhook_endpoints${qs({ limit: 100 })}`);
      const logs = await Promise.all(page.data.map((e) => api(`/v1/webhook_endpoints/${enc(e.id)}/deliveries${qs({ limit: 20 })}`)));
      problem.clear();
      fill(list, page.data.length ? page.data.map((e, i) => endpointCard(e, logs[i].data)) : h("div", { class: "empty" },
        h("h2", {}, "No webhook endpoints"),
        h("p", {}, "Register one and batchq posts a signed event when each batch ends:"),
        h("pre", { class: "code" }, "batchq webhooks create https://example.com/hooks/batchq")));
    } catch (error) {
      if (error.status !== 401) problem.show(error);
    }
  });
}
