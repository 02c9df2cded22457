// One batch: progress, timeline, throughput, errors by code, usage and cost, downloads, cancel / pause / resume.
import { api, download, enc, qs } from "../api.js";
import { lineChart } from "../chart.js";
import { h, fill, toast } from "../dom.js";
import { DASH, clock, duration, int, money, rate, relative, untilText } from "../format.js";
import { every, problemBar } from "../live.js";
import { averageRate, done, eta, observe, requestsPerSecond, throughput } from "../progress.js";
import { closedLines, countsLine, isActive, progressBar, statusPill, waitingText } from "../status.js";
import { describe } from "./batches.js";

const END_STEP = { completed: "completed_at", failed: "failed_at", expired: "expired_at", cancelled: "cancelled_at" };

function timeline(b) {
  const end = END_STEP[b.status];
  const steps = [["Created", b.created_at]];
  if (b.in_progress_at || !end) steps.push(["In progress", b.in_progress_at]);
  if (b.cancelling_at) steps.push(["Cancelling", b.cancelling_at]);
  if (b.finalizing_at || !end) steps.push(["Finalizing", b.finalizing_at]);
  steps.push([end ? b.status[0].toUpperCase() + b.status.slice(1) : "Done", end ? b[end] : null]);
  // The step under way is the last one reached while the batch is still active.
  const reached = steps.filter(([, at]) => at).length - 1;
  let previous = null;
  const items = steps.map(([label, at], i) => {
    const state = !at ? "pending" : i === reached && !end ? "current" : "done";
    const since = at && previous ? `+${duration(at - previous)}` : null;
    if (at) previous = at;
    const note = state === "current" ? `for ${duration(Date.now() / 1000 - at)}` : since;
    return h("li", { class: ["step", state, label === "Failed" && "bad", label === "Expired" && "bad", label === "Cancelled" && "muted-step"] },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "step-label" }, label),
      h("span", { class: "step-time", title: at ? clock(at) : null }, at ? clock(at).slice(11) : DASH),
      note ? h("span", { class: "step-since muted" }, note) : null);
  });
  return h("ol", { class: "timeline", "data-role": "timeline" }, items);
}

function tile(label, value, role) {
  return h("div", { class: "tile" }, h("div", { class: "tile-label" }, label), h("div", { class: "tile-value", "data-role": role }, value));
}

function progressCard(b) {
  const final = !isActive(b);
  const until = eta(b);
  const took = final && b.in_progress_at ? (b.finalizing_at || b[END_STEP[b.status]] || 0) - b.in_progress_at : null;
  const why = waitingText(b);
  return h("div", { class: "card span-2" },
    h("h2", {}, "Progress"),
    progressBar(b, { large: true }),
    countsLine(b),
    why ? h("p", { class: "waiting big", "data-role": "waiting" }, `Held back: ${why}`) : null,
    h("div", { class: "tiles" },
      tile("Completed", int(b.request_counts?.completed || 0), "tile-completed"),
      tile("Failed", int(Math.max(0, (b.request_counts?.failed || 0) - closedLines(b))), "tile-failed"),
      closedLines(b) ? tile("Not sent", int(closedLines(b)), "tile-closed") : null,
      tile("Total", int(b.request_counts?.total || 0), "tile-total"),
      tile(final ? "Average req/s" : "Req/s", rate(final ? averageRate(b) : requestsPerSecond(b)), "tile-rate"),
      final ? tile("Took", took === null ? DASH : took < 1 ? "< 1 s" : duration(took), "tile-took") : tile("ETA", untilText(until), "tile-eta")));
}

function throughputCard(b) {
  const chart = lineChart(throughput(b.id));
  const avg = averageRate(b);
  return h("div", { class: "card" },
    h("h2", {}, "Throughput"),
    chart || h("p", { class: "muted empty-small" },
      isActive(b) ? "Collecting samples: the chart fills in while this page is open." : "Too few samples from this tab to draw it (the chart fills in while a running batch is open)."),
    h("p", { class: "muted small" }, `Average ${rate(avg)} req/s over the batch's run.`));
}

function usageCard(b) {
  const u = b.usage || {};
  const cost = b.estimated_cost;
  const rows = [
    ["Input tokens", int(u.input_tokens)],
    ["Cached input tokens", int(u.input_tokens_details?.cached_tokens)],
    ["Output tokens", int(u.output_tokens)],
    ["Total tokens", int(u.total_tokens)],
    ["Estimated cost", cost ? money(cost) : isActive(b) ? "when the batch ends" : DASH],
  ];
  if (cost && cost.regular_amount !== undefined) {
    rows.push(["Regular price", `${cost.regular_amount.toFixed(4)} ${cost.currency || "USD"} (batch discount ${Math.round((cost.discount || 0) * 100)}%)`]);
  }
  if (b.spend_limit_usd) rows.push(["Spend limit", `${b.spend_limit_usd} USD`]);
  return h("div", { class: "card" }, h("h2", {}, "Usage and cost"), keyValues(rows, "usage"));
}

function keyValues(rows, role) {
  return h("dl", { class: "kv", "data-role": role }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function detailsCard(b, inputFile) {
  const meta = Object.entries(b.metadata || {});
  return h("div", { class: "card" },
    h("h2", {}, "Details"),
    keyValues([
      ["Model", b.model || DASH],
      ["Endpoint", h("span", { class: "mono" }, b.endpoint)],
      ["Completion window", b.completion_window],
      ["Expires", b.expires_at ? `${clock(b.expires_at)} (${relative(b.expires_at)})` : DASH],
      ["Input file", inputFile ? h("span", {}, h("span", { "data-role": "input-filename" }, inputFile.filename), " ", h("span", { class: "mono muted" }, b.input_file_id)) : h("span", { class: "mono" }, b.input_file_id)],
      ["Output file", b.output_file_id ? h("span", { class: "mono" }, b.output_file_id) : DASH],
      ["Error file", b.error_file_id ? h("span", { class: "mono" }, b.error_file_id) : DASH],
    ], "details"),
    meta.length ? [h("h3", {}, "Metadata"), h("table", { class: "grid compact", "data-role": "metadata" },
      h("tbody", {}, meta.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))))] : null);
}

function validationCard(b) {
  const errors = b.errors?.data || [];
  if (!errors.length) return null;
  return h("div", { class: "card span-2 danger-card" },
    h("h2", {}, `The input did not validate (${int(errors.length)} error${errors.length === 1 ? "" : "s"})`),
    h("p", { class: "muted" }, "Nothing was sent upstream. Fix these lines and submit the file again."),
    h("table", { class: "grid", "data-role": "validation-errors" },
      h("thead", {}, h("tr", {}, ["Line", "Code", "Param", "Message"].map((c) => h("th", { scope: "col", class: c === "Line" ? "num narrow-col" : null }, c)))),
      h("tbody", {}, errors.map((e) => h("tr", {},
        h("td", { class: "num" }, e.line ?? DASH), h("td", { class: "mono" }, e.code), h("td", { class: "mono" }, e.param ?? DASH), h("td", {}, e.message))))));
}

function errorsCard(summary) {
  if (!summary || !summary.total) return null;
  return h("div", { class: "card span-2", id: "errors" },
    h("h2", {}, `Errors by code (${int(summary.total)}${summary.final ? "" : " so far"})`),
    h("div", { class: "error-codes", "data-role": "errors" }, summary.codes.map((c) => h("section", { class: "error-code" },
      h("div", { class: "error-head" }, h("span", { class: "mono err-code" }, c.code), h("span", { class: "count" }, `${int(c.count)} line${c.count === 1 ? "" : "s"}`)),
      h("ul", { class: "examples" }, c.examples.map((e) => h("li", {},
        h("span", { class: "muted" }, e.line ? `line ${int(e.line)}` : ""),
        h("span", { class: "mono cid" }, e.custom_id),
        e.status_code ? h("span", { class: "muted" }, `HTTP ${e.status_code}`) : null,
        h("span", { class: "msg" }, e.message))))))));
}

export function render(main, route) {
  const id = route.id;
  const problem = problemBar();
  const body = h("div", { class: "detail-grid" });
  const header = h("div", { class: "page-head detail-head" });
  const actions = h("div", { class: "actions", "data-role": "actions" });
  fill(main, h("section", { class: "page", "data-batch-id": id },
    h("a", { href: "#/batches", class: "back" }, "← All batches"), header, actions, problem.el, body));

  let batch = null;
  let inputFile = null;
  let errors = null;
  let errorsKey = null;
  let confirming = false;
  let busy = false;

  const act = async (label, path, payload) => {
    busy = true;
    drawActions();
    try {
      batch = await api(`/v1/batches/${enc(id)}/${path}`, { method: "POST", body: payload });
      toast(`${label}: done.`);
    } catch (error) {
      const missing = error.status === 404 && error.code === "not_found";
      toast(missing ? `${label} is not available on this server yet.` : `${label} failed: ${error.message}`, "error");
    } finally {
      busy = false;
      confirming = false;
      await refresh();
    }
  };

  const save = async (fileId, name) => {
    try {
      const size = await download(fileId, name);
      toast(`Downloaded ${name} (${int(size)} bytes).`);
    } catch (error) {
      toast(`Download failed: ${error.message}`, "error");
    }
  };

  let actionsKey = null;
  function drawActions() {
    if (!batch) return;
    const b = batch;
    // Rebuilt only when something they depend on changed: a half-typed limit or a focused button survives polls.
    const key = JSON.stringify([b.status, b.paused_at, b.paused_reason, b.output_file_id, b.error_file_id, busy, confirming]);
    if (key === actionsKey) return;
    actionsKey = key;
    const buttons = [];
    if (b.output_file_id) buttons.push(h("button", { class: "btn", id: "download-output", disabled: busy, onclick: () => save(b.output_file_id, `${b.id}_output.jsonl`) }, "Download output"));
    if (b.error_file_id) buttons.push(h("button", { class: "btn", id: "download-errors", disabled: busy, onclick: () => save(b.error_file_id, `${b.id}_errors.jsonl`) }, "Download errors"));
    if (b.status === "in_progress" && !b.paused_at) buttons.push(h("button", { class: "btn", id: "pause", disabled: busy, onclick: () => act("Pause", "pause") }, "Pause"));
    if (b.status === "in_progress" && b.paused_at) {
      if (b.paused_reason === "spend_limit") {
        // Resuming a batch its spend limit paused needs a higher limit (DESIGN.md, batch control).
        const limit = h("input", { type: "number", id: "spend-limit", min: "0", step: "any", class: "inline-input",
          placeholder: "new limit, USD", "aria-label": "New spend limit in USD" });
        buttons.push(limit);
        buttons.push(h("button", { class: "btn primary", id: "resume", disabled: busy, onclick: () => {
          const value = Number(limit.value);
          act("Resume", "resume", value > 0 ? { spend_limit_usd: value } : undefined);
        } }, "Raise limit and resume"));
      } else {
        buttons.push(h("button", { class: "btn primary", id: "resume", disabled: busy, onclick: () => act("Resume", "resume") }, "Resume"));
      }
    }
    if (["validating", "in_progress", "finalizing"].includes(b.status)) {
      if (confirming) {
        buttons.push(h("span", { class: "confirm" }, "Cancel this batch? Lines not yet sent are dropped.",
          h("button", { class: "btn danger", id: "confirm-cancel", disabled: busy, onclick: () => act("Cancel", "cancel") }, "Yes, cancel"),
          h("button", { class: "btn ghost", id: "keep", onclick: () => { confirming = false; drawActions(); } }, "Keep it running")));
      } else {
        buttons.push(h("button", { class: "btn danger-outline", id: "cancel", disabled: busy, onclick: () => { confirming = true; drawActions(); } }, "Cancel batch"));
      }
    }
    fill(actions, buttons);
    actions.hidden = !buttons.length;
  }

  const draw = () => {
    const b = batch;
    const description = describe(b);
    const ran = Boolean(b.in_progress_at);
    fill(header,
      h("div", {},
        h("h1", { class: "mono batch-title", "data-role": "batch-id" }, b.id),
        description ? h("p", { class: "desc", "data-role": "description" }, description) : null),
      h("div", { class: "head-status" }, statusPill(b), h("span", { class: "muted small" }, `created ${relative(b.created_at)}`)));
    drawActions();
    fill(body,
      validationCard(b),
      done(b) || isActive(b) || b.status !== "failed" ? progressCard(b) : null,
      h("div", { class: "card" }, h("h2", {}, "Timeline"), timeline(b)),
      ran ? throughputCard(b) : null,
      errorsCard(errors),
      ran ? usageCard(b) : null,
      detailsCard(b, inputFile));
  };

  let errorsAt = 0;
  const loadErrors = async () => {
    const key = `${batch.status}:${batch.request_counts?.failed || 0}`;
    if (key === errorsKey || !(batch.request_counts?.failed)) return;
    // While it runs the server reads every outcome recorded so far: at most every 5 s, and only when `failed` moved.
    if (isActive(batch) && errors && Date.now() - errorsAt < 5000) return;
    errorsKey = key;
    errorsAt = Date.now();
    errors = await api(`/dashboard/api/batches/${enc(id)}/errors${qs({ examples: 3 })}`);
  };

  async function refresh() {
    try {
      batch = await api(`/v1/batches/${enc(id)}`);
      observe(batch);
      if (inputFile === null) inputFile = await api(`/v1/files/${enc(batch.input_file_id)}`).catch(() => false);
      await loadErrors();
      problem.clear();
      draw();
    } catch (error) {
      if (error.status === 404) {
        fill(body, h("div", { class: "empty card span-2" }, h("h2", {}, "No such batch"),
          h("p", {}, "It does not exist, was deleted, or belongs to another account.")));
        fill(header);
        fill(actions);
      } else if (error.status !== 401) problem.show(error);
    }
  }

  return every(() => (batch && !isActive(batch) ? 10_000 : 1000), refresh);
}
