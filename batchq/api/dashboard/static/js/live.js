// Polling that stops with the page: each read starts after the previous one ended, and none runs in a hidden tab.
import { h, fill } from "./dom.js";

/** Call fn now and then every ms (a number, or a function giving it) until the returned stop() is called. */
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    timer = null;
    if (stopped) return;
    if (!document.hidden) await fn();
    if (!stopped) timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
  };
  const wake = () => {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener("visibilitychange", wake);
  tick();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", wake);
  };
}

/** A line above a page's content that says a read failed (and clears once one succeeds). */
export function problemBar() {
  const bar = h("div", { class: "problem", role: "alert", hidden: true });
  return {
    el: bar,
    show(error) {
      bar.hidden = false;
      fill(bar, error.status ? `The API answered ${error.status}: ${error.message}` : `Cannot reach the API: ${error.message}`);
    },
    clear() {
      bar.hidden = true;
    },
  };
}
