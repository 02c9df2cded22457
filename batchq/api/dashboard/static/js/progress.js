// Live figures of a batch computed in the page: requests per second from successive reads of its counters, the ETA
// (the server's estimated_completion_at when it gives one), and the samples behind the throughput chart.

const HISTORY_S = 15 * 60;
const RATE_WINDOW_S = 10;
const samples = new Map(); // batch id -> [{t, done}] (unix seconds, completed + failed)

export const done = (batch) => (batch.request_counts?.completed || 0) + (batch.request_counts?.failed || 0);

const endedAt = (b) => b.finalizing_at || b.completed_at || b.cancelled_at || b.expired_at || b.failed_at || null;

/** Remember the batch's counters as read now (every page that reads a batch calls this). */
export function observe(batch, now = Date.now() / 1000) {
  const list = samples.get(batch.id) || [];
  const started = batch.first_request_at || batch.in_progress_at;
  if (!list.length && started && started < now - 1) {
    // Seen for the first time while (or after) it ran: its start with nothing done, so the chart's first stretch
    // is the mean rate up to now rather than nothing.
    list.push({ t: started, done: 0 });
  }
  const last = list[list.length - 1];
  const ended = endedAt(batch);
  if (ended) {
    // Over: one last sample at the moment its lines stopped, not a flat line at zero while the page stays open.
    if (last && last.done !== done(batch) && ended > last.t) list.push({ t: ended, done: done(batch) });
  } else if (!last || now - last.t >= 0.25) list.push({ t: now, done: done(batch) });
  while (list.length && now - list[0].t > HISTORY_S) list.shift();
  samples.set(batch.id, list);
}

export const history = (id) => samples.get(id) || [];

/** Requests per second: over the last seconds this page watched, else the average since the first line started. */
export function requestsPerSecond(batch, now = Date.now() / 1000) {
  if (batch.status !== "in_progress" && batch.status !== "cancelling") return averageRate(batch);
  const list = history(batch.id).filter((p) => now - p.t <= RATE_WINDOW_S);
  if (list.length >= 2 && list[list.length - 1].t - list[0].t >= 2) {
    const first = list[0];
    const last = list[list.length - 1];
    return Math.max(0, (last.done - first.done) / (last.t - first.t));
  }
  return averageRate(batch, now);
}

/** The batch's mean rate from its first started line to its end (or now). */
export function averageRate(batch, now = Date.now() / 1000) {
  const start = batch.first_request_at || batch.in_progress_at;
  const end = endedAt(batch) || now;
  if (!start || end - start < 1) return null;
  // Lines a cancel or the deadline closed were never sent: they are not throughput.
  const closed = (batch.request_counts?.cancelled || 0) + (batch.request_counts?.expired || 0);
  return Math.max(0, done(batch) - closed) / (end - start);
}

/** Unix seconds when the batch should be done, or null (paused, not started, final). */
export function eta(batch, now = Date.now() / 1000) {
  if (batch.status !== "in_progress" || batch.paused_at) return null;
  if (batch.estimated_completion_at) return batch.estimated_completion_at;
  const left = (batch.request_counts?.total || 0) - done(batch);
  const perSecond = requestsPerSecond(batch, now);
  if (!perSecond || left <= 0) return null;
  return now + left / perSecond;
}

/** Throughput over time for the chart: [{t, perSecond}] from the samples, each over 1.5 s or more. */
export function throughput(id) {
  const list = history(id);
  const out = [];
  let base = list[0];
  for (const p of list.slice(1)) {
    if (p.t - base.t < 1.5) continue;
    out.push({ t: p.t, perSecond: Math.max(0, (p.done - base.done) / (p.t - base.t)) });
    base = p;
  }
  return out;
}
