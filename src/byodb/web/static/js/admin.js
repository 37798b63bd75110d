// The admin BYOD dashboard: totals, schema versions, instances (errors first), one
// instance's migration history. Every call is authorised again on the server.
import { api, busy, h, replaceChildren, timeElement } from "./api.js";

const $ = (selector) => document.querySelector(selector);
const ui = {
  totals: $("[data-totals]"),
  generated: $("[data-generated]"),
  refresh: $("[data-refresh]"),
  latest: $("[data-latest]"),
  versions: $("[data-versions]"),
  embeddingsModel: $("[data-embeddings-model]"),
  embeddings: $("[data-embeddings]"),
  instances: $("[data-instances]"),
  filter: $("[data-status-filter]"),
  detail: $("[data-detail]"),
  detailTitle: $("[data-detail-title]"),
  detailFacts: $("[data-detail-facts]"),
  migrations: $("[data-migrations]"),
  detailClose: $("[data-detail-close]"),
};

const STATUS_LABELS = { connected: "Connected", pending: "Pending", moving: "Moving",
                        error: "Error", disconnected: "Disconnected", none: "Not configured" };
const STATUS_TONES = { connected: "ok", pending: "busy", moving: "busy", error: "error",
                       disconnected: "neutral", none: "neutral" };

function statusBadge(status) {
  return h("span", { class: `badge badge-${STATUS_TONES[status] || "neutral"}` }, STATUS_LABELS[status] || status);
}

function renderTotals(data) {
  const cards = [
    ["Users", data.users, "neutral"],
    ...Object.entries(data.totals).map(([status, count]) => [STATUS_LABELS[status] || status, count, STATUS_TONES[status]]),
    ["Behind latest schema", data.behind_latest, data.behind_latest ? "busy" : "neutral"],
  ];
  replaceChildren(ui.totals, cards.map(([label, count, tone]) =>
    h("div", { class: `stat stat-${tone}` },
      h("span", { class: "stat-value" }, String(count)),
      h("span", { class: "stat-label" }, label))));
  ui.totals.removeAttribute("aria-busy");
}

function renderVersions(data) {
  ui.latest.textContent = `Latest schema version: ${data.latest_schema_version}`;
  const total = data.versions.reduce((sum, v) => sum + v.count, 0);
  if (!total) {
    replaceChildren(ui.versions, h("li", { class: "muted" }, "No deployed instances yet."));
    return;
  }
  replaceChildren(ui.versions, data.versions.map((v) => {
    const behind = v.schema_version < data.latest_schema_version;
    const bar = h("span", { class: `bar-fill${behind ? " is-behind" : ""}` });
    bar.style.width = `${Math.max(4, Math.round((100 * v.count) / total))}%`;
    return h("li", { class: "bar-row" },
      h("span", { class: "bar-label" }, `v${v.schema_version}${behind ? " (behind)" : ""}`),
      h("span", { class: "bar" }, bar),
      h("span", { class: "bar-count" }, `${v.count} instance${v.count === 1 ? "" : "s"}`));
  }));
}

const REEMBED_LABELS = { done: "done", running: "re-embedding", waiting: "waiting (schema v1)",
                        failed: "failed, retried next minute" };

// Re-embedding after a model change: users by status, rows done and still to do.
function renderEmbeddings(data) {
  const embeddings = data.embeddings;
  if (!embeddings) return;
  ui.embeddingsModel.textContent = `Current model: ${embeddings.model}`;
  const rows = embeddings.by_status.filter((item) => item.model === embeddings.model);
  if (!rows.length) {
    replaceChildren(ui.embeddings, h("li", { class: "muted" }, "No re-embedding recorded for this model yet."));
    return;
  }
  replaceChildren(ui.embeddings, rows.map((item) => h("li", {},
    `${item.users} user${item.users === 1 ? "" : "s"} ${REEMBED_LABELS[item.status] || item.status}`
    + (item.rows_done || item.rows_remaining
      ? ` (${item.rows_done} rows done, ${item.rows_remaining} to do)` : ""))));
}

function latency(item) {
  return item.health_latency_ms === null || item.health_latency_ms === undefined ? "—"
    : `${item.health_latency_ms} ms`;
}

// The latest error: the failed health check's code while connected (below the failure
// threshold), else the recorded connection error.
function lastError(item) {
  if (item.connection_error) return `${item.connection_error} (${item.connection_error_code || "no code"})`;
  if (item.health_error_code) return `last check failed: ${item.health_error_code}`;
  return "";
}

// What the instance is doing now, in words (not the last deployment's progress line).
function currentState(item) {
  const failures = item.consecutive_failures;
  switch (item.connection_status) {
    case "connected":
      return failures ? `Connected; the last ${failures} check(s) failed (${item.health_error_code || "error"}), it is blocked if the next ones fail too.`
        : "Connected and answering.";
    case "error":
      return `Down: ${item.connection_error || "not reachable"} (${item.connection_error_code || "no code"}). ` +
        (item.outage_reported_at ? "Reported to the admins. " : "") +
        "The health sweep keeps checking and reconnects the user by itself when it answers.";
    case "moving": return `Moving data: ${item.deployment_progress || "in progress"}`;
    case "pending": return `Waiting to be connected: ${item.deployment_progress || "deployment queued"}`;
    default: return STATUS_LABELS[item.connection_status] || item.connection_status;
  }
}

function instanceRow(item) {
  const details = h("button", { type: "button", class: "btn btn-quiet btn-small",
                                "aria-label": `Details for ${item.user_id}` }, "Details");
  details.addEventListener("click", () => showDetail(item.user_id, details));
  const schema = item.schema_version === null ? "—"
    : `v${item.schema_version}${item.behind_latest ? " (behind)" : ""}`;
  return h("tr", { class: item.connection_status === "error" ? "row-error" : null },
    h("th", { scope: "row" }, item.user_id),
    h("td", {}, h("code", {}, item.host || "—")),
    h("td", {}, statusBadge(item.connection_status)),
    h("td", {}, schema),
    h("td", {}, timeElement(item.last_health_check_at || item.last_connection_test)),
    h("td", {}, latency(item)),
    h("td", { class: "cell-error" }, lastError(item)),
    h("td", {}, details));
}

async function load() {
  const status = ui.filter.value;
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  ui.generated.textContent = "Loading…";
  try {
    const data = await busy(ui.refresh, () => api("GET", `/api/admin/byod${query}`));
    renderTotals(data);
    renderVersions(data);
    renderEmbeddings(data);
    replaceChildren(ui.instances, data.instances.length ? data.instances.map(instanceRow)
      : h("tr", {}, h("td", { colspan: "8", class: "muted" }, status ? "No instances in this status." : "No user has connected a database yet.")));
    ui.generated.textContent = "Updated just now";
  } catch (error) {
    ui.generated.textContent = "";
    replaceChildren(ui.instances, h("tr", {}, h("td", { colspan: "8", class: "alert alert-error" },
      `Couldn't load the dashboard. ${error.message}`)));
  }
}

function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

async function showDetail(userId, button) {
  try {
    const data = await busy(button, () => api("GET", `/api/admin/byod/instances/${encodeURIComponent(userId)}`));
    const item = data.instance;
    ui.detailTitle.textContent = `Instance of ${item.user_id}`;
    replaceChildren(ui.detailFacts, [
      ...fact("Database", h("code", {}, item.database || "—")),
      ...fact("Status", statusBadge(item.connection_status), ` · deployment ${item.deployment_status}`),
      ...fact("Current state", currentState(item)),
      ...fact("Last health check", timeElement(item.last_health_check_at), item.last_health_check_at ? ` · ${latency(item)}${item.health_error_code ? ` · ${item.health_error_code}` : " · ok"}` : ""),
      ...fact("Schema", item.schema_version === null ? "not deployed" : `version ${item.schema_version}`),
      ...fact("Last connection test", timeElement(item.last_connection_test)),
      ...fact("Last deployed", timeElement(item.last_schema_deploy)),
      ...fact("Consecutive failures", String(item.consecutive_failures)),
      ...fact("Last error", item.connection_error ? `${item.connection_error} (${item.connection_error_code || "no code"})` : "none"),
      ...fact("Last deployment step", item.deployment_progress || "—"),
      ...fact("Instance id", h("code", {}, item.instance_id || "—")),
      ...fact("Updated", timeElement(item.updated_at)),
    ]);
    replaceChildren(ui.migrations, data.migrations.length ? data.migrations.map((m) =>
      h("tr", {},
        h("td", {}, `v${m.from_version} → v${m.to_version}`),
        h("td", {}, h("span", { class: `badge badge-${m.status === "completed" ? "ok" : m.status === "failed" ? "error" : "busy"}` }, m.status)),
        h("td", {}, String(m.attempts)),
        h("td", {}, timeElement(m.started_at)),
        h("td", {}, duration(m.duration_ms)),
        h("td", { class: "cell-error" }, m.error || "")))
      : h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No migrations have run on this instance yet.")));
    ui.detail.hidden = false;
    ui.detail.focus();
    history.replaceState(null, "", `?user=${encodeURIComponent(userId)}`);
  } catch (error) {
    ui.detail.hidden = false;
    ui.detailTitle.textContent = "Instance";
    replaceChildren(ui.detailFacts, h("p", { class: "alert alert-error" }, error.message));
    replaceChildren(ui.migrations);
  }
}

ui.refresh.addEventListener("click", load);
ui.filter.addEventListener("change", load);
ui.detailClose.addEventListener("click", () => {
  ui.detail.hidden = true;
  history.replaceState(null, "", location.pathname);
});

await load();
const deepLink = new URLSearchParams(location.search).get("user");
if (deepLink) showDetail(deepLink, null);
