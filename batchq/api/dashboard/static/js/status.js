// How a batch's state looks: its status pill, why it waits, its progress bar.
import { h } from "./dom.js";
import { int, percent } from "./format.js";
import { done } from "./progress.js";

const LABELS = {
  validating: "Validating",
  in_progress: "In progress",
  finalizing: "Finalizing",
  completed: "Completed",
  failed: "Failed",
  expired: "Expired",
  cancelling: "Cancelling",
  cancelled: "Cancelled",
};

export const ACTIVE = new Set(["validating", "in_progress", "finalizing", "cancelling"]);
export const isActive = (batch) => ACTIVE.has(batch.status);

export function statusPill(batch) {
  const paused = batch.status === "in_progress" && batch.paused_at;
  const kind = paused ? "paused" : batch.status;
  return h("span", { class: ["pill", `st-${kind}`], "data-status": batch.status },
    paused ? "Paused" : LABELS[batch.status] || batch.status);
}

const REASONS = {
  window: "waiting for its time window",
  capacity: "waiting for upstream capacity",
  paused: "paused",
  spend_limit: "paused: spend limit reached",
};

/** Why the batch is held back, in words, or null when it runs (or is over). */
export function waitingText(batch) {
  if (batch.status !== "in_progress") return null;
  if (batch.paused_at || batch.paused_reason) {
    return batch.paused_reason ? REASONS[batch.paused_reason] || `paused: ${batch.paused_reason}` : "paused";
  }
  if (batch.waiting_reason) return REASONS[batch.waiting_reason] || `waiting: ${batch.waiting_reason}`;
  if (batch.queued) return "queued: waiting its turn";
  return null;
}

export function waitingNote(batch) {
  const text = waitingText(batch);
  return text ? h("span", { class: "waiting", "data-role": "waiting" }, text) : null;
}

/** Lines a cancel or the deadline closed before they were sent (counted as failed, as OpenAI does). */
export const closedLines = (batch) => (batch.request_counts?.cancelled || 0) + (batch.request_counts?.expired || 0);

/** A bar in three colours: succeeded, failed, closed unsent (cancel or deadline), over the batch's total. */
export function progressBar(batch, { large = false } = {}) {
  const total = batch.request_counts?.total || 0;
  const completed = batch.request_counts?.completed || 0;
  const closed = closedLines(batch);
  const failed = Math.max(0, (batch.request_counts?.failed || 0) - closed);
  const part = (cls, n) => {
    const el = h("span", { class: cls });
    // CSSOM widths, not style attributes: the Content-Security-Policy allows no inline style.
    el.style.width = total ? `${(100 * n) / total}%` : "0%";
    return el;
  };
  const label = `${int(done(batch))} of ${int(total)} requests done`;
  return h("div", {
    class: ["progress", large && "large", batch.status === "validating" && "indeterminate"],
    role: "progressbar",
    "aria-label": label,
    title: label,
    "aria-valuemin": 0,
    "aria-valuemax": total,
    "aria-valuenow": done(batch),
  }, part("bar-ok", completed), part("bar-bad", failed), part("bar-closed", closed));
}

/** "812 / 1,000 · 3 failed · 81%" (and how many a cancel or the deadline closed). */
export function countsLine(batch) {
  const c = batch.request_counts || {};
  const closed = closedLines(batch);
  const failed = Math.max(0, (c.failed || 0) - closed);
  const closedWord = c.expired && !c.cancelled ? "expired" : "not sent";
  return h("div", { class: "counts" },
    h("span", { class: "num", "data-role": "completed" }, int(c.completed || 0)),
    h("span", { class: "muted" }, " / "),
    h("span", { class: "num", "data-role": "total" }, int(c.total || 0)),
    failed ? h("span", { class: "failed-count", "data-role": "failed" }, ` · ${int(failed)} failed`) : null,
    closed ? h("span", { class: "muted", "data-role": "closed" }, ` · ${int(closed)} ${closedWord}`) : null,
    h("span", { class: "muted pct" }, ` · ${percent(done(batch), c.total || 0)}`));
}
