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
    h("td", {}, timeElement(item.last_connection_test)),
    h("td", { class: "cell-error" }, item.connection_error || ""),
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
    replaceChildren(ui.instances, data.instances.length ? data.instances.map(instanceRow)
      : h("tr", {}, h("td", { colspan: "7", class: "muted" }, status ? "No instances in this status." : "No user has connected a database yet.")));
    ui.generated.textContent = "Updated just now";
  } catch (error) {
    ui.generated.textContent = "";
    replaceChildren(ui.instances, h("tr", {}, h("td", { colspan: "7", class: "alert alert-error" },
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
      ...fact("Schema", item.schema_version === null ? "not deployed" : `version ${item.schema_version}`),
      ...fact("Last check", timeElement(item.last_connection_test)),
      ...fact("Last deployed", timeElement(item.last_schema_deploy)),
      ...fact("Consecutive failures", String(item.consecutive_failures)),
      ...fact("Last error", item.connection_error ? `${item.connection_error} (${item.connection_error_code || "no code"})` : "none"),
      ...fact("Progress", item.deployment_progress || "—"),
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
