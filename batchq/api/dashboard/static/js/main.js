// The dashboard's shell: who is signed in, which page shows (the part of the URL after #), the navigation.
import { api, credentials, onUnauthorized } from "./api.js";
import { h, fill, toast } from "./dom.js";
import * as batches from "./pages/batches.js";
import * as batch from "./pages/batch.js";
import * as files from "./pages/files.js";
import * as webhooks from "./pages/webhooks.js";
import * as operator from "./pages/operator.js";
import * as signin from "./pages/signin.js";

const PAGES = { batches, batch, files, webhooks, operator };
const main = document.getElementById("main");
let session = null; // {account, local_mode} once signed in (or in local mode)
let stop = null;

function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "batches" && parts[1]) return { page: "batch", id: parts[1] };
  if (parts[0] in PAGES) return { page: parts[0] };
  return { page: "batches" };
}

async function loadSession() {
  try {
    session = await api("/dashboard/api/session");
  } catch (error) {
    if (error.status !== 401) throw error;
    session = null;
  }
}

function showChrome(route) {
  const nav = document.getElementById("nav");
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a")) {
    const page = link.dataset.page;
    const on = page === route.page || (page === "batches" && route.page === "batch");
    link.classList.toggle("active", on);
    on ? link.setAttribute("aria-current", "page") : link.removeAttribute("aria-current");
  }
  const who = document.getElementById("who");
  who.hidden = false;
  const signout = document.getElementById("signout");
  if (session) {
    fill(document.getElementById("account"),
      session.local_mode ? h("span", { class: "badge" }, "local mode") : null,
      h("span", { class: "account-name", "data-role": "account" }, session.account));
  } else {
    fill(document.getElementById("account"), h("span", { class: "muted" }, "not signed in"));
  }
  signout.hidden = !session || session.local_mode;
}

async function render() {
  if (stop) stop();
  stop = null;
  const route = currentRoute();
  document.body.dataset.page = route.page;
  if (!session && route.page !== "operator") {
    document.getElementById("nav").hidden = true;
    document.getElementById("who").hidden = true;
    stop = signin.render(main, { onSignedIn });
    return;
  }
  showChrome(route);
  window.scrollTo(0, 0);
  stop = PAGES[route.page].render(main, route, { session });
}

async function onSignedIn(value) {
  session = value;
  await render();
}

function signOut(message) {
  credentials.apiKey = null;
  credentials.metricsToken = null;
  session = null;
  if (message) toast(message, "error");
  render();
}

onUnauthorized.add((error) => {
  if (session && !session.local_mode) signOut(`Signed out: ${error.message}`);
});

async function start() {
  document.getElementById("signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", render);
  try {
    await loadSession();
  } catch (error) {
    fill(main, h("div", { class: "problem" }, `Cannot reach the API: ${error.message}`));
    return;
  }
  await render();
}

start();
