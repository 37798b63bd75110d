// The admin dashboard's schema-migration part: "Run schema migrations" starts a run
// (canary first), then the panel follows the latest run live: progress, per-instance
// errors, "Retry failed". Every call is authorised again on the server.
import { api, busy, h, replaceChildren, toast } from "./api.js";

const button = document.querySelector('[data-fleet-action="migrate_all"]');
const ui = {
  panel: document.querySelector("[data-rollout]"),
  summary: document.querySelector("[data-rollout-summary]"),
  bar: document.querySelector("[data-rollout-bar]"),
  errorsTable: document.querySelector("[data-rollout-errors-table]"),
  errors: document.querySelector("[data-rollout-errors]"),
  retry: document.querySelector("[data-rollout-retry]"),
};
const POLL_MS = 1000;
const STATUS_WORDS = { running: "Running", halted: "Halted", completed: "Completed",
                       incomplete: "Finished, some instances left" };
let following = null;

function render(run) {
  ui.panel.hidden = false;
  const settled = run.completed + run.failed;
  ui.bar.max = Math.max(run.total, 1);
  ui.bar.value = run.total ? settled : 1;
  const parts = [`${STATUS_WORDS[run.status] || run.status}: to version ${run.to_version}`
    + (run.dry_run ? " (dry run)" : "") + ` — ${run.completed} of ${run.total} done, `
    + `${run.failed} failed, ${run.pending} pending, ${run.already_current} already current`
    + (run.canary ? `; canary of ${run.canary}, wave ${run.wave}` : "") + "."];
  if (run.halted_reason) parts.push(` Halted: ${run.halted_reason}.`);
  ui.summary.textContent = parts.join("");
  const troubled = (run.instances || []).filter((i) => i.status === "failed"
    || (i.status === "pending" && i.error_code));
  ui.errorsTable.hidden = troubled.length === 0;
  replaceChildren(ui.errors, ...troubled.map((i) => h("tr", {},
    h("td", {}, i.user_id), h("td", {}, i.host || "—"), h("td", {}, i.status),
    h("td", {}, i.step == null ? "—" : String(i.step)), h("td", {}, String(i.attempts)),
    h("td", {}, `${i.error_code || ""}${i.error ? `: ${i.error}` : ""}`))));
  ui.retry.hidden = run.failed === 0;
  ui.retry.dataset.run = run.id;
}

async function follow(runId) {
  following = runId;
  while (following === runId) {
    let run;
    try {
      run = await api("GET", `/api/admin/byod/migrations/${runId}`);
    } catch (error) {
      ui.summary.textContent = `Couldn't load the run. ${error.message}`;
      return;
    }
    render(run);
    if (run.status !== "running") {
      document.querySelector("[data-refresh]")?.click();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function start() {
  await busy(button, async () => {
    const { id } = await api("POST", button.dataset.path, {});
    toast("Schema migration started: a canary first, then the rest.");
    follow(id);
  });
}

async function retryFailed() {
  await busy(ui.retry, async () => {
    const runId = ui.retry.dataset.run;
    const { retried } = await api("POST", `/api/admin/byod/migrations/${runId}/retry-failed`);
    toast(`Retrying ${retried} instance(s).`);
    follow(runId);
  });
}

async function latest() {
  try {
    const { runs } = await api("GET", "/api/admin/byod/migrations");
    if (runs.length) follow(runs[0].id);
  } catch {
    // The rest of the dashboard still works; the panel stays hidden.
  }
}

if (button && ui.panel) {
  button.addEventListener("click", start);
  ui.retry.addEventListener("click", retryFailed);
  latest();
}
