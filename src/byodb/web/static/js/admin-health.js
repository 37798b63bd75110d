// The admin dashboard's health part: the last sweep (time, duration, counts), when the next
// one is due, and "Check all connections now" (queues a sweep, follows it until it ends,
// then reloads the dashboard). Every call is authorised again on the server.
import { api, busy, h, replaceChildren, timeElement, toast } from "./api.js";

const line = document.querySelector("[data-sweep]");
const button = document.querySelector('[data-fleet-action="health_check"]');
const FOLLOW_MS = 120000;
const POLL_MS = 1000;

function seconds(ms) {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function render(schedule) {
  if (!line) return;
  const parts = [];
  const last = schedule.last_sweep;
  if (last) {
    parts.push("Last sweep ", timeElement(last.finished_at),
      ` (${last.trigger === "operator" ? "asked for" : "scheduled"}) took ${seconds(last.duration_ms)}: ` +
      `${last.checked} checked, ${last.failed} failed, ${last.recovered} recovered.`);
  } else {
    parts.push("No sweep has run yet.");
  }
  if (schedule.running) parts.push(" A sweep is running now.");
  if (schedule.next_sweep_after) {
    // timeElement says "in 2 minutes" (or "1 minute ago" once due): no word before it.
    const due = new Date(schedule.next_sweep_after).getTime() <= Date.now();
    parts.push(" Next scheduled sweep: ",
      due ? "due now" : timeElement(schedule.next_sweep_after),
      ` (every ${Math.round(schedule.interval_s)} s).`);
  }
  replaceChildren(line, h("span", {}, ...parts));
}

async function refreshSchedule() {
  try {
    const schedule = await api("GET", "/api/admin/byod/health");
    render(schedule);
    return schedule;
  } catch (error) {
    if (line) line.textContent = `Couldn't load the sweep schedule. ${error.message}`;
    return null;
  }
}

async function checkAllNow() {
  await busy(button, async () => {
    const before = (await refreshSchedule())?.last_sweep?.id ?? null;
    await api("POST", button.dataset.path);
    toast("Checking every connection…");
    const until = Date.now() + FOLLOW_MS;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      const schedule = await refreshSchedule();
      const last = schedule?.last_sweep;
      if (last && last.id !== before && last.trigger === "operator") {
        toast(`Checked ${last.checked}: ${last.failed} failed, ${last.recovered} recovered.`, "success");
        document.querySelector("[data-refresh]")?.click();
        return;
      }
    }
    toast("The check is still running; its result will show here when it ends.");
  }, "Checking…").catch((error) => toast(error.message, "error"));
}

if (button && !button.disabled) button.addEventListener("click", checkAllNow);
await refreshSchedule();
