// The connection blocker (the seeds' ConnectionBlocker): while the user's own database is
// unreachable the app is replaced by a full-page explanation with "Retry connection".
// It opens when the page was rendered blocked, or when any content request answers 503
// byod_unavailable. A successful retry brings the app back in place: pages register a
// reload of their own data with onReconnect(), nothing else is reloaded.
import { api, busy } from "./api.js";

const MORE_HINTS_AFTER = 3;
const reconnectHandlers = [];
const app = document.getElementById("main");
const blocker = document.getElementById("blocker");
const moving = document.getElementById("moving");
let failures = 0;
let movingTimer = null;
let lastFocus = null;

export function onReconnect(handler) {
  reconnectHandlers.push(handler);
}

export function isBlocked() {
  return Boolean(blocker && !blocker.hidden);
}

function hideApp(hidden) {
  if (!app) return;
  app.hidden = hidden;
  app.inert = hidden;
}

function describe(state) {
  if (!blocker || !state) return;
  // The title already says "can't reach": show the error only when it adds something.
  const detail = state.connection_error_code && state.connection_error_code !== "unreachable"
    ? state.connection_error : "";
  const error = blocker.querySelector("[data-blocker-error]");
  error.textContent = detail || "";
  error.hidden = !detail;
  blocker.querySelector("[data-blocker-code]").textContent =
    state.connection_error_code ? `Error code: ${state.connection_error_code}` : "";
  const host = blocker.querySelector("[data-blocker-host]");
  host.textContent = state.database ? ` (${state.database})` : "";
}

// While blocked, watch the state: the health sweep reconnects the user by itself when their
// database answers again, and the app comes back without a retry.
const WATCH_MS = 15000;
let watchTimer = null;

function watchForRecovery() {
  if (watchTimer) return;
  watchTimer = setInterval(async () => {
    if (!isBlocked()) { clearInterval(watchTimer); watchTimer = null; return; }
    let state;
    try { state = await api("GET", "/api/byod"); } catch { return; }
    if (state.connection_status !== "error") settle(state);
  }, WATCH_MS);
}

function showBlocker(state) {
  if (!blocker) return;
  if (moving) moving.hidden = true;
  watchForRecovery();
  describe(state);
  if (blocker.hidden) lastFocus = document.activeElement;
  hideApp(true);
  blocker.hidden = false;
  blocker.querySelector("[data-blocker-title]").focus();
}

function restoreApp() {
  if (blocker) blocker.hidden = true;
  if (moving) moving.hidden = true;
  hideApp(false);
  failures = 0;
  const more = blocker?.querySelector("[data-blocker-more]");
  if (more) more.hidden = true;
  if (blocker) blocker.querySelector("[data-blocker-status]").textContent = "";
  for (const handler of reconnectHandlers) {
    try { handler(); } catch (error) { console.error(error); }
  }
  (lastFocus && document.contains(lastFocus) ? lastFocus : app)?.focus();
}

function showMoving() {
  if (!moving) return;
  hideApp(true);
  moving.hidden = false;
  moving.querySelector("h1").focus();
  clearInterval(movingTimer);
  movingTimer = setInterval(async () => {
    let state;
    try { state = await api("GET", "/api/byod"); } catch { return; }
    if (state.connection_status === "moving") return;
    clearInterval(movingTimer);
    movingTimer = null;
    settle(state);
  }, 1000);
}

// Decide from the user's BYOD state (read from main, which is always reachable).
function settle(state) {
  if (state.connection_status === "moving") return showMoving();
  if (state.connection_status === "error" && state.deployment_status === "deployed") {
    return showBlocker(state);
  }
  if (isBlocked() || (moving && !moving.hidden)) restoreApp();
}

async function onUnavailable() {
  let state;
  try {
    state = await api("GET", "/api/byod");
  } catch {
    return;
  }
  settle(state);
}

async function retry(button) {
  const status = blocker.querySelector("[data-blocker-status]");
  status.textContent = "Trying to reach your database…";
  let state;
  try {
    state = await busy(button, () => api("POST", "/api/byod/retry"), "Retrying…");
  } catch (error) {
    state = null;
    status.textContent = error.message;
  }
  if (state && state.connection_status === "connected") {
    status.textContent = "Connected again.";
    restoreApp();
    return;
  }
  if (state && state.connection_status === "moving") {
    showMoving();
    return;
  }
  failures += 1;
  if (state) describe(state);
  const why = state?.connection_error ? ` ${state.connection_error}` : "";
  status.textContent = `Still can't connect (attempt ${failures}).${why}`;
  if (failures >= MORE_HINTS_AFTER) blocker.querySelector("[data-blocker-more]").hidden = false;
}

if (blocker) {
  const button = blocker.querySelector("[data-blocker-retry]");
  button.addEventListener("click", () => retry(button));
  if (!blocker.hidden) {
    watchForRecovery();
    hideApp(true);
    blocker.querySelector("[data-blocker-title]").focus();
  }
}
document.addEventListener("byodb:unavailable", onUnavailable);
