// The /v1 API and /metrics, called with the key of this tab. Keys live in sessionStorage: they leave with the tab,
// never reach a cookie, a URL or the page's markup, and are sent only as an Authorization header.

const API_KEY = "batchq.apiKey";
const METRICS_TOKEN = "batchq.metricsToken";

export const credentials = {
  get apiKey() { return sessionStorage.getItem(API_KEY); },
  set apiKey(value) { value ? sessionStorage.setItem(API_KEY, value) : sessionStorage.removeItem(API_KEY); },
  get metricsToken() { return sessionStorage.getItem(METRICS_TOKEN); },
  set metricsToken(value) {
    value ? sessionStorage.setItem(METRICS_TOKEN, value) : sessionStorage.removeItem(METRICS_TOKEN);
  },
};

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Listeners told when the API says the key is no good (the page goes back to sign-in). */
export const onUnauthorized = new Set();

async function failure(res) {
  let message = `${res.status} ${res.statusText}`;
  let code = null;
  try {
    const body = await res.json();
    if (body && body.error) ({ message, code } = body.error);
  } catch { /* not JSON: keep the status line */ }
  return new ApiError(res.status, message, code);
}

function headers(token, json) {
  const out = {};
  if (token) out.Authorization = `Bearer ${token}`;
  if (json) out["Content-Type"] = "application/json";
  return out;
}

/** A JSON call to the API (or the raw Response with raw: true); throws ApiError on an error answer. */
export async function api(path, { method = "GET", body, raw = false, token } = {}) {
  const res = await fetch(path, {
    method,
    headers: headers(token === undefined ? credentials.apiKey : token, body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    redirect: "error",
  });
  if (!res.ok) {
    const error = await failure(res);
    if (res.status === 401 && token === undefined) onUnauthorized.forEach((listener) => listener(error));
    throw error;
  }
  return raw ? res : res.json();
}

export const qs = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) q.set(k, String(v));
  const text = q.toString();
  return text ? `?${text}` : "";
};
export const enc = encodeURIComponent;

/** Save a file of the account: fetched with the key (a plain link could not send it), handed over as a blob. */
export async function download(fileId, filename) {
  const res = await api(`/v1/files/${enc(fileId)}/content`, { raw: true });
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename || `${fileId}.jsonl`;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}

/** /metrics as text, with the metrics token when one is given (loopback needs none when the server has none). */
export async function readMetrics() {
  const res = await api("/metrics", { raw: true, token: credentials.metricsToken || null });
  return res.text();
}
