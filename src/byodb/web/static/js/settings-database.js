// Settings → Database: status, test / save & deploy with live progress, retry, update
// credentials, disconnect. The URL typed here is sent to the server and then cleared from
// the page; the server never sends it back (only the redacted form).
import { api, busy, h, openDialog, readJson, replaceChildren, request, showError,
         timeElement, toast } from "./api.js";

const $ = (selector) => document.querySelector(selector);
const ui = {
  badge: $("[data-status-badge]"),
  summary: $("[data-status-summary]"),
  facts: $("[data-status-facts]"),
  error: $("[data-status-error]"),
  errorMessage: $("[data-status-error-message]"),
  errorHint: $("[data-status-error-hint]"),
  progress: $("[data-progress]"),
  progressLabel: $("[data-progress-label]"),
  progressCount: $("[data-progress-count]"),
  progressBar: $("[data-progress-bar]"),
  progressSteps: $("[data-progress-steps]"),
  retry: $("[data-retry]"),
  update: $("[data-update-credentials]"),
  openDisconnect: $("[data-open-disconnect]"),
  connectCard: $("[data-connect-card]"),
  connectTitle: $("[data-connect-title]"),
  form: $("[data-connect-form]"),
  url: $("#database-url"),
  ca: $("#ca-certificate"),
  caFile: $("[data-ca-file]"),
  toggleSecret: $("[data-toggle-secret]"),
  test: $("[data-test]"),
  save: $("[data-save]"),
  saveHelp: $("[data-save-help]"),
  cancelUpdate: $("[data-cancel-update]"),
  switchChoice: $("[data-switch-choice]"),
  result: $("[data-test-result]"),
  resultTitle: $("[data-test-title]"),
  resultMessage: $("[data-test-message]"),
  resultHint: $("[data-test-hint]"),
  dialog: $("[data-disconnect-dialog]"),
  refused: $("[data-connect-refused]"),
};

// A plain title and a fix hint for every code the connection test (or a deployment) reports.
const CODES = {
  ok: ["Connection works", null],
  invalid_url: ["That isn't a PostgreSQL URL byodb can use", "It should look like postgresql://user:password@host:5432/database."],
  blocked_address: ["That address isn't allowed", "byodb only connects to public addresses. Use your provider's public host name."],
  dns_failure: ["The host name wasn't found", "Check the spelling of the host in the URL."],
  unreachable: ["The server couldn't be reached", "Check the host and port, and that the server accepts connections from outside."],
  timeout: ["The server didn't answer in time", "Check that the database is running and not paused, then try again."],
  tls_failed: ["A secure connection couldn't be set up", "Check that the server supports TLS and that sslmode in the URL matches it; to verify a provider's private CA, paste its certificate below."],
  read_only: ["This database only accepts reads", "Use the primary database's URL with a user that may create tables, such as the owner."],
  unsupported_encoding: ["This database can't store every character", "Create the database with UTF8 encoding (the default at hosted providers) and use that one."],
  pooler_unsupported: ["The connection pooler refused a setting byodb needs", "Use your provider's direct (unpooled) URL."],
  server_error: ["The database answered with an error", "Fix the cause on your database, then test again."],
  byod_timeout: ["Your database answered too slowly", "You are still connected; try again in a moment."],
  auth_failed: ["The user name or password was refused", "Copy the password again, or reset it at your provider."],
  database_missing: ["That database doesn't exist", "Create it first, or fix the database name at the end of the URL."],
  insufficient_privileges: ["This user lacks a privilege byodb needs", "Use the database owner, or GRANT CREATE ON DATABASE to this user."],
  pgvector_missing: ["The pgvector extension isn't available", "Enable the vector extension in your provider's dashboard, or run CREATE EXTENSION vector; as an administrator."],
  schema_conflict: ["There's already a “byodb” schema here", "Use a dedicated database, or rename or drop the existing byodb schema."],
  unsupported_version: ["This PostgreSQL version isn't supported", "byodb needs PostgreSQL 14 or newer."],
  rate_limited: ["Too many tests in a row", "Wait a minute, then try again."],
  deploy_failed: ["The database rejected a deployment step", "Check the user's privileges, then retry."],
  step_failed: ["Your database refused a step", "The message above names the step and what your database answered. Fix that, then press Retry."],
  lock_timeout: ["A table byodb needs stayed locked", "Another session on your database (an open transaction?) holds it. End that transaction, then press Retry."],
  credentials_unreadable: ["Your saved credentials can't be read", "Save your database URL again with Update credentials."],
  network: ["byodb couldn't be reached", "Check your internet connection and try again."],
  byod_disabled: ["Not available right now", null],
  premium_required: ["Premium plan needed", "Upgrade your plan, then sign in again."],
};

const IN_FLIGHT = (s) => s.deployment_status === "deploying" || s.connection_status === "pending" || s.connection_status === "moving";

let state = readJson("byod-state");
// Whether the operator's flags let this account connect a new database (the kill switch,
// the premium gate). Content already on the user's own database is never refused.
const connect = readJson("byod-connect") || { allowed: true };
let testedUrl = null;
let source = null;
let pollTimer = null;
let updating = false;

// ---- status ------------------------------------------------------------------------

function statusOf(s) {
  const c = s.connection_status;
  const d = s.deployment_status;
  if (c === "none") return ["Not configured", "neutral", "Your content is stored on byodb's database. Connect your own PostgreSQL below to keep it there instead."];
  if (c === "disconnected") return ["Disconnected", "neutral", "Your database is disconnected. New content is stored on byodb's database."];
  if (c === "moving") return ["Moving your data", "busy", s.deployment_progress || "Your data is being moved. The app is paused for a moment."];
  if (d === "deploying") return ["Deploying", "busy", "byodb is creating its tables on your database."];
  if (c === "pending" && d === "deployed") return ["Moving your data", "busy", "Moving your existing content to your database."];
  if (c === "pending") return ["Waiting to deploy", "busy", "Your database is saved; the deployment starts in a moment."];
  if (c === "connected") return ["Connected", "ok", "Your content is stored only on your database."];
  if (c === "error" && d === "deployed") return ["Connection error", "error", "Your database is unreachable, so the app is paused for your account. Nothing is saved anywhere else meanwhile."];
  if (c === "error") return ["Deployment failed", "error", "The deployment did not complete. Your content is still on byodb's database, nothing was switched."];
  return [c, "neutral", ""];
}

function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function schemaFact(s) {
  if (s.schema_version === null || s.schema_version === undefined) return "not deployed";
  if (s.update_available) return `version ${s.schema_version} — update to ${s.latest_schema_version} pending`;
  return `version ${s.schema_version} (up to date)`;
}

function renderStatus() {
  const [label, tone, summary] = statusOf(state);
  ui.badge.textContent = label;
  ui.badge.className = `badge badge-${tone}`;
  ui.summary.textContent = summary;
  const configured = !["none", "disconnected"].includes(state.connection_status);
  replaceChildren(ui.facts, configured ? [
    ...fact("Database", h("code", { class: "redacted" }, state.database || "—")),
    ...fact("Schema", schemaFact(state)),
    ...fact("Last check", timeElement(state.last_connection_test)),
    ...fact("Last deployed", timeElement(state.last_schema_deploy)),
  ] : []);
  ui.facts.hidden = !configured;

  const failed = state.connection_status === "error";
  ui.error.hidden = !failed;
  if (failed) {
    const code = state.connection_error_code;
    ui.errorMessage.textContent = state.connection_error || "Something went wrong.";
    ui.errorHint.textContent = (CODES[code] && CODES[code][1]) || "Fix the cause, then retry.";
  }
  const busyNow = IN_FLIGHT(state);
  ui.retry.hidden = !failed || busyNow;
  ui.update.hidden = !configured || busyNow || updating;
  ui.openDisconnect.hidden = !configured || busyNow;
  renderProgress();
  renderConnectCard();
}

// The steps of a deployment (or a disconnect), derived from the state; the server's own
// label for the running statement is shown under the current step.
const DEPLOY_STEPS = ["Credentials saved, encrypted", "Connecting to your database",
                      "Creating byodb's tables", "Moving your existing content", "Connected"];

function deployStep(s) {
  if (s.connection_status === "connected") return 4;
  if (s.deployment_status === "deployed") return 3;
  if (s.deployment_status === "deploying" && s.deployment_step > 0) return 2;
  return 1;
}

let flow = null;      // {kind: "deploy" | "disconnect", reached: step index, label}
let outcome = null;   // "done" | "failed" once the flow settled

function startFlow(kind, label = null) {
  // "started" turns true once the state is seen in flight: a retry may return the old,
  // settled state before its job has begun, which is not yet the outcome.
  flow = { kind, reached: 0, label, started: false };
  outcome = null;
}

function trackFlow() {
  if (!flow && IN_FLIGHT(state)) {
    const label = state.deployment_progress || "";
    const leaving = state.connection_status === "moving" && /back|delet/i.test(label);
    startFlow(leaving ? "disconnect" : "deploy", leaving ? label : null);
  }
  if (!flow) return;
  if (IN_FLIGHT(state)) {
    flow.started = true;
    outcome = null;
  }
  if (flow.kind === "deploy") flow.reached = Math.max(flow.reached, deployStep(state));
  if (flow.started && !IN_FLIGHT(state)) {
    const ok = flow.kind === "deploy" ? state.connection_status === "connected"
                                      : state.connection_status === "disconnected";
    outcome = ok ? "done" : "failed";
  }
}

function stepItem(text, status, detail = null) {
  const marks = { done: "✓", failed: "✕", todo: "" };
  const spoken = { done: "done", failed: "failed", todo: "not started", current: "in progress" };
  return h("li", { class: `step step-${status}` },
    status === "current" ? h("span", { class: "spinner", "aria-hidden": "true" })
                         : h("span", { class: "step-mark", "aria-hidden": "true" }, marks[status]),
    h("span", { class: "step-text" }, text,
      detail ? h("span", { class: "step-detail" }, detail) : null),
    h("span", { class: "visually-hidden" }, ` (${spoken[status]})`));
}

function renderProgress() {
  trackFlow();
  ui.progress.hidden = !flow;
  if (!flow) return;
  const live = IN_FLIGHT(state);
  const { deployment_step: step, deployment_total_steps: total } = state;
  let items;
  let percent;
  if (flow.kind === "deploy") {
    const current = flow.reached;
    items = DEPLOY_STEPS.map((text, index) => {
      let status = index < current ? "done" : index === current ? "current" : "todo";
      if (index === current && outcome === "done") status = "done";
      if (index === current && outcome === "failed") status = "failed";
      let detail = null;
      if (status === "current" && index === 1 && state.deployment_status !== "deploying") detail = "Waiting to start…";
      if (status === "current" && index === 2 && total > 0) detail = `Step ${step} of ${total} · ${state.deployment_progress || ""}`;
      if (index === 4 && status === "done" && state.deployment_progress) detail = state.deployment_progress;
      return stepItem(text, status, detail);
    });
    percent = outcome === "done" ? 100
      : current >= 3 ? 95
      : current === 2 && total > 0 ? 10 + Math.round((80 * step) / total)
      : current === 1 ? 5 : null;
  } else {
    const first = outcome === "failed" ? "failed" : live ? "current" : "done";
    items = [stepItem(flow.label || "Moving your data", first),
             stepItem("Disconnected", outcome === "done" ? "done" : "todo")];
    percent = outcome === "done" ? 100 : null;
  }
  ui.progressLabel.textContent = outcome === "done"
    ? (flow.kind === "deploy" ? "Your database is connected" : "Your database is disconnected")
    : outcome === "failed" ? "It didn't finish — see the error above"
    : (state.deployment_progress || "Starting…");
  ui.progressCount.textContent = percent === null ? "" : `${percent}%`;
  if (percent === null) ui.progressBar.removeAttribute("value");
  else ui.progressBar.value = percent;
  replaceChildren(ui.progressSteps, items);
}

function renderConnectCard() {
  const c = state.connection_status;
  const needsUrl = c === "none" || c === "disconnected" || (c === "error" && state.deployment_status !== "deployed");
  const refused = !connect.allowed && !state.content_on_own_database;
  const show = !IN_FLIGHT(state) && (needsUrl || updating) && !refused;
  ui.connectCard.hidden = !show;
  ui.refused.hidden = !(refused && needsUrl && !IN_FLIGHT(state));
  ui.connectTitle.textContent = updating ? "Update credentials"
    : c === "error" ? "Try a different database URL" : "Connect your database";
  ui.cancelUpdate.hidden = !updating;
  ui.switchChoice.hidden = !updating;
}

// ---- live progress ------------------------------------------------------------------

function apply(next) {
  const before = state;
  state = next;
  renderStatus();
  if (IN_FLIGHT(before) && !IN_FLIGHT(state)) {
    if (state.connection_status === "connected") toast("Your database is connected.", "success");
    if (state.connection_status === "disconnected") toast("Your database is disconnected.", "success");
    if (state.connection_status === "error") toast("It didn't work. See the error above.", "error", 8000);
  }
}

function stopFollowing() {
  if (source) { source.close(); source = null; }
  if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
}

function follow(since = null) {
  stopFollowing();
  const query = since ? `?since=${encodeURIComponent(since)}` : "";
  source = new EventSource(`/api/byod/events${query}`);
  source.addEventListener("state", (event) => apply(JSON.parse(event.data)));
  source.addEventListener("end", stopFollowing);
  source.onerror = () => {
    // The stream broke (network, server restart): keep up by polling instead.
    stopFollowing();
    pollTimer = setInterval(async () => {
      try {
        apply(await api("GET", "/api/byod"));
        if (!IN_FLIGHT(state)) stopFollowing();
      } catch { /* keep trying */ }
    }, 1500);
  };
}

// ---- test, save & deploy ----------------------------------------------------------------

function showResult(ok, code, message, hint) {
  const [title, fallbackHint] = CODES[code] || [ok ? "Connection works" : "The test failed", null];
  ui.result.hidden = false;
  ui.result.className = `test-result ${ok ? "is-ok" : "is-error"}`;
  ui.resultTitle.textContent = title;
  ui.resultMessage.textContent = message || "";
  ui.resultHint.textContent = ok ? "" : (hint || fallbackHint || "");
  ui.resultHint.hidden = ok || !ui.resultHint.textContent;
}

function resetTest() {
  testedUrl = null;
  ui.save.disabled = true;
  ui.result.hidden = true;
  ui.saveHelp.textContent = "Test the connection first; then you can save and deploy.";
}

ui.url.addEventListener("input", () => { if (ui.url.value !== testedUrl) resetTest(); });
ui.ca.addEventListener("input", () => resetTest());
ui.caFile.addEventListener("change", async () => {
  const file = ui.caFile.files && ui.caFile.files[0];
  if (!file) return;
  ui.ca.value = await file.text();
  resetTest();
});

// The URL, and the CA certificate when one was pasted or uploaded.
function connectionBody(url) {
  const body = { url };
  const ca = ui.ca.value.trim();
  if (ca) body.ca_certificate = ca;
  return body;
}

ui.toggleSecret.addEventListener("click", () => {
  const show = ui.url.type === "password";
  ui.url.type = show ? "text" : "password";
  ui.toggleSecret.textContent = show ? "Hide" : "Show";
  ui.toggleSecret.setAttribute("aria-pressed", String(show));
  ui.url.focus();
});

ui.test.addEventListener("click", async () => {
  const url = ui.url.value.trim();
  if (!url) {
    showResult(false, "invalid_url", "Enter your database URL first.", null);
    ui.url.focus();
    return;
  }
  resetTest();
  try {
    const verdict = await busy(ui.test, () => api("POST", "/api/byod/test", connectionBody(url)), "Testing…");
    showResult(verdict.ok, verdict.code, verdict.message, verdict.hint);
    if (verdict.ok && ui.url.value.trim() === url) {
      testedUrl = ui.url.value;
      ui.save.disabled = false;
      ui.saveHelp.textContent = updating
        ? "Saving switches byodb to this URL. The same database with new credentials: nothing moves. Another database: your content moves there, and the current one keeps or deletes its copy as chosen above."
        : "Save & deploy creates byodb's tables in a “byodb” schema on your database and moves your content there.";
    }
  } catch (error) {
    showResult(false, error.code, error.message, error.hint);
  }
});

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (ui.save.disabled || testedUrl === null) return;
  const url = ui.url.value.trim();
  try {
    const body = connectionBody(url);
    if (updating) {
      body.old_database = ui.form.querySelector("input[name=old_database]:checked")?.value || "keep";
    }
    const saved = await busy(ui.save, () => api("PUT", "/api/byod", body), "Saving…");
    ui.url.value = "";
    ui.ca.value = "";
    ui.caFile.value = "";
    ui.url.type = "password";
    ui.toggleSecret.textContent = "Show";
    ui.toggleSecret.setAttribute("aria-pressed", "false");
    resetTest();
    updating = false;
    startFlow("deploy");
    apply(saved);
    follow();
  } catch (error) {
    showResult(false, error.code, error.message, error.hint);
    ui.save.disabled = true;
  }
});

ui.update.addEventListener("click", () => {
  updating = true;
  resetTest();
  renderStatus();
  ui.url.focus();
});
ui.cancelUpdate.addEventListener("click", () => {
  updating = false;
  ui.url.value = "";
  resetTest();
  renderStatus();
  ui.update.focus();
});

ui.retry.addEventListener("click", async () => {
  try {
    const { status, data: next } = await busy(
      ui.retry, () => request("POST", "/api/byod/retry"), "Retrying…");
    // 202: a deployment or a move was queued. Its answer may still show the old, settled
    // state (the job has not begun): follow the changes after it, not that state.
    const queued = status === 202;
    if (IN_FLIGHT(next) || queued) startFlow("deploy");
    apply(next);
    if (next.connection_status === "connected") {
      toast("Connected again.", "success");
    } else if (queued && !IN_FLIGHT(next)) {
      follow(next.updated_at);
    } else if (IN_FLIGHT(next)) {
      follow();
    } else {
      toast("Still can't connect. See the error above.", "error", 8000);
    }
  } catch (error) {
    toast(error.message, "error", 8000);
  }
});

// ---- disconnect -------------------------------------------------------------------------

const UNAVAILABLE_KEY = "byodb.disconnect.unavailable";
const unavailable = JSON.parse(sessionStorage.getItem(UNAVAILABLE_KEY) || "{}");
const form = ui.dialog.querySelector("form");
const confirmBox = ui.dialog.querySelector("[data-confirm-delete]");
const confirmInput = ui.dialog.querySelector("#confirm-delete");
const confirmButton = ui.dialog.querySelector("[data-confirm-disconnect]");
const dialogError = ui.dialog.querySelector("[data-dialog-error]");

function reasonFor(mode) {
  if (unavailable[mode]) return unavailable[mode];
  if (mode !== "keep" && state.connection_status !== "connected") {
    return "Needs your database to be reachable. Retry the connection first, or keep the data where it is.";
  }
  return null;
}

function renderChoices() {
  for (const choice of ui.dialog.querySelectorAll("[data-choice]")) {
    const mode = choice.dataset.choice;
    const reason = reasonFor(mode);
    const radio = choice.querySelector("input");
    radio.disabled = Boolean(reason);
    if (reason && radio.checked) radio.checked = false;
    choice.classList.toggle("is-disabled", Boolean(reason));
    const note = choice.querySelector("[data-choice-reason]");
    note.textContent = reason ? `Not available: ${reason}` : "";
    note.hidden = !reason;
  }
  const mode = form.mode.value;
  confirmBox.hidden = mode !== "delete";
  confirmButton.disabled = !mode || (mode === "delete" && confirmInput.value.trim() !== "DELETE");
  confirmButton.textContent = mode === "delete" ? "Delete and disconnect" : "Disconnect";
}

ui.openDisconnect.addEventListener("click", () => {
  form.reset();
  confirmInput.value = "";
  renderChoices();
  openDialog(ui.dialog);
});
form.addEventListener("change", renderChoices);
confirmInput.addEventListener("input", renderChoices);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const mode = form.mode.value;
  if (!mode || confirmButton.disabled) return;
  try {
    const next = await busy(confirmButton, () => api("POST", "/api/byod/disconnect", { mode }), "Working…");
    ui.dialog.close();
    if (IN_FLIGHT(next)) startFlow("disconnect", next.deployment_progress);
    apply(next);
    if (IN_FLIGHT(next)) follow();
    else toast(mode === "keep" ? "Disconnected. Your data stays on your database." : "Disconnected.", "success");
  } catch (error) {
    if (error.status === 501) {
      unavailable[mode] = error.message || "not built yet";
      sessionStorage.setItem(UNAVAILABLE_KEY, JSON.stringify(unavailable));
      showError(dialogError, { message: "That option isn't available yet. Choose another one." });
    } else if (error.status === 404 || error.status === 405) {
      for (const m of ["keep", "migrate", "delete"]) unavailable[m] = "disconnecting isn't available on this server yet";
      showError(dialogError, { message: "Disconnecting isn't available on this server yet." });
    } else {
      showError(dialogError, error);
    }
    renderChoices();
  }
});

// ---- start --------------------------------------------------------------------------

renderStatus();
if (IN_FLIGHT(state)) follow();
