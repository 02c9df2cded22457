// Sign-in: an API key for this tab only. In local mode the server needs none and this page never shows.
import { api, credentials } from "../api.js";
import { h, fill } from "../dom.js";

export function render(main, { onSignedIn }) {
  const input = h("input", {
    id: "api-key", name: "api-key", type: "password", autocomplete: "off", spellcheck: "false",
    placeholder: "your batchq API key", required: true, "aria-describedby": "signin-help",
  });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const button = h("button", { class: "btn primary", type: "submit", id: "signin-button" }, "Sign in");
  const form = h("form", { class: "signin card", id: "signin" },
    h("h1", {}, "Sign in to batchq"),
    h("p", { class: "muted", id: "signin-help" },
      "Your API key stays in this browser tab only: it is sent to this server as a Bearer header and forgotten when the tab closes."),
    h("label", { for: "api-key" }, "API key"),
    input,
    error,
    button,
    h("p", { class: "muted small" }, "Operators: the ", h("a", { href: "#/operator" }, "operator page"),
      " takes the metrics token instead."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    error.hidden = true;
    try {
      const session = await api("/dashboard/api/session", { token: key });
      credentials.apiKey = key;
      input.value = "";
      onSignedIn(session);
    } catch (e) {
      fill(error, e.status === 401 ? "That key was not accepted." : `Cannot sign in: ${e.message}`);
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  fill(main, h("div", { class: "center" }, form));
  input.focus();
  return () => {};
}
