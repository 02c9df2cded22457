// The account's files: inputs it uploaded and the outputs its batches wrote, each downloadable.
import { api, download, qs } from "../api.js";
import { h, fill, toast } from "../dom.js";
import { DASH, bytes, clock, int, relative } from "../format.js";
import { every, problemBar } from "../live.js";

const PURPOSES = { batch: "input", batch_output: "output" };

function row(file) {
  const save = async (button) => {
    button.disabled = true;
    try {
      const size = await download(file.id, file.filename);
      toast(`Downloaded ${file.filename} (${int(size)} bytes).`);
    } catch (error) {
      toast(`Download failed: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  };
  const button = h("button", { class: "btn small", "data-role": "download" }, "Download");
  button.addEventListener("click", () => save(button));
  return h("tr", { "data-file-id": file.id },
    h("td", { "data-label": "Name", class: "filename", "data-role": "filename" }, file.filename),
    h("td", { "data-label": "ID", class: "mono muted" }, file.id),
    h("td", { "data-label": "Purpose" }, h("span", { class: ["tag", `purpose-${PURPOSES[file.purpose] || "other"}`] }, PURPOSES[file.purpose] || file.purpose)),
    h("td", { "data-label": "Size", class: "num" }, bytes(file.bytes)),
    h("td", { "data-label": "Created", title: clock(file.created_at) }, relative(file.created_at)),
    h("td", { "data-label": "Expires" }, file.expires_at ? relative(file.expires_at) : "never"),
    h("td", { class: "actions-cell" }, button));
}

export function render(main) {
  const problem = problemBar();
  const summary = h("div", { class: "summary muted" });
  const tbody = h("tbody");
  const card = h("div", { class: "card table-card" }, h("table", { class: "grid files", id: "files" },
    h("thead", {}, h("tr", {}, ["Name", "ID", "Purpose", "Size", "Created", "Expires", ""].map((c) => h("th", { scope: "col", class: c === "Size" ? "num" : null }, c)))),
    tbody));
  const empty = h("div", { class: "empty", hidden: true }, h("h2", {}, "No files yet"),
    h("p", {}, "Uploads (purpose batch) and the output and error files of finished batches show up here."));
  fill(main, h("section", { class: "page" }, h("div", { class: "page-head" }, h("h1", {}, "Files"), summary), problem.el, card, empty));
  let last = "";
  return every(5000, async () => {
    try {
      const page = await api(`/v1/files${qs({ limit: 200 })}`);
      problem.clear();
      const key = JSON.stringify(page.data.map((f) => [f.id, f.bytes, f.expires_at]));
      if (key === last) return; // unchanged: keep the rows (and a button being clicked)
      last = key;
      const total = page.data.reduce((n, f) => n + (f.bytes || 0), 0);
      fill(summary, page.data.length ? `${int(page.data.length)} file${page.data.length === 1 ? "" : "s"} · ${bytes(total)}${page.has_more ? " · newest 200 shown" : ""}` : DASH);
      card.hidden = !page.data.length;
      empty.hidden = !!page.data.length;
      fill(tbody, page.data.map(row));
    } catch (error) {
      if (error.status !== 401) problem.show(error);
    }
  });
}
