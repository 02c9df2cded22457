// Prometheus text format (what /metrics answers), read into {name -> [{labels, value}]}.

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/;

function parseLabels(text) {
  const labels = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) break;
    const name = text.slice(i, eq).trim().replace(/^,/, "").trim();
    let j = eq + 2; // past ="
    let value = "";
    while (j < text.length && text[j] !== '"') {
      if (text[j] === "\\" && j + 1 < text.length) {
        const next = text[j + 1];
        value += next === "n" ? "\n" : next;
        j += 2;
      } else {
        value += text[j];
        j += 1;
      }
    }
    labels[name] = value;
    i = j + 1;
    while (i < text.length && (text[i] === "," || text[i] === " ")) i += 1;
  }
  return labels;
}

export function parseMetrics(text) {
  const series = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const value = Number(m[4]);
    if (!series.has(m[1])) series.set(m[1], []);
    series.get(m[1]).push({ labels: m[3] ? parseLabels(m[3]) : {}, value });
  }
  return series;
}

/** The single value of an unlabelled series (or the sum of its samples), null when absent. */
export function scalar(series, name) {
  const samples = series.get(name);
  return samples ? samples.reduce((n, s) => n + s.value, 0) : null;
}

/** {labelValue -> value} of a series over one label. */
export function byLabel(series, name, label, where = {}) {
  const out = new Map();
  for (const s of series.get(name) || []) {
    if (Object.entries(where).every(([k, v]) => s.labels[k] === v)) out.set(s.labels[label], (out.get(s.labels[label]) || 0) + s.value);
  }
  return out;
}
