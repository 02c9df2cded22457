// Numbers and times as people read them: grouped digits, short durations, local clock times.

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });

export const DASH = "—";

export function int(n) {
  return n === null || n === undefined || Number.isNaN(n) ? DASH : integer.format(n);
}

export function rate(perSecond) {
  if (perSecond === null || perSecond === undefined || !Number.isFinite(perSecond)) return DASH;
  return perSecond >= 100 ? integer.format(perSecond) : oneDecimal.format(perSecond);
}

export function percent(part, whole) {
  if (!whole) return "0%";
  const p = (100 * part) / whole;
  return p > 0 && p < 1 ? "<1%" : `${Math.floor(p)}%`;
}

export function bytes(n) {
  if (n === null || n === undefined) return DASH;
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${integer.format(value)} B` : `${oneDecimal.format(value)} ${units[unit]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return DASH;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const pad = (n) => String(n).padStart(2, "0");

/** A unix time as local "YYYY-MM-DD HH:MM:SS". */
export function clock(unix) {
  if (!unix) return DASH;
  const d = new Date(unix * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "12 s ago", "3 min ago", "in 5 min"; a date beyond a day. */
export function relative(unix, now = Date.now() / 1000) {
  if (!unix) return DASH;
  const delta = unix - now;
  const abs = Math.abs(delta);
  if (abs > 86400) return clock(unix).slice(0, 16);
  if (abs < 2) return "just now";
  const text = abs < 60 ? `${Math.round(abs)} s` : abs < 3600 ? `${Math.round(abs / 60)} min` : `${Math.round(abs / 3600)} h`;
  return delta < 0 ? `${text} ago` : `in ${text}`;
}

/** When something should happen: "in 3 min 05 s", "any moment". */
export function untilText(unix, now = Date.now() / 1000) {
  if (!unix) return DASH;
  const left = unix - now;
  return left < 1 ? "any moment" : `in ${duration(left)}`;
}

export function money(cost) {
  if (!cost || cost.amount === undefined || cost.amount === null) return DASH;
  const digits = cost.amount !== 0 && cost.amount < 0.01 ? 4 : 2;
  return `${cost.amount.toFixed(digits)} ${cost.currency || "USD"}`;
}

export const shortId = (id) => (id && id.length > 18 ? `${id.slice(0, 12)}…${id.slice(-4)}` : id || DASH);
