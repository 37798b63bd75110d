// Live updates of the user's content from their other tabs (BYOD_REALTIME, GET /api/changes).
// Events carry ids only; a page reloads what it shows through the normal API. This tab's own
// writes come back too and are skipped (they carry its TAB_ID). Off unless the server says
// so on the page (<body data-realtime="on">).
import { TAB_ID } from "./api.js";

const handlers = [];
let source = null;

function connect() {
  if (source || document.body.dataset.realtime !== "on") return;
  source = new EventSource("/api/changes");
  source.addEventListener("change", (event) => {
    const change = JSON.parse(event.data);
    if (change.tab === TAB_ID) return;
    for (const handler of handlers) Promise.resolve(handler(change)).catch(() => {});
  });
  source.addEventListener("resync", () => {
    for (const handler of handlers) Promise.resolve(handler({ area: "*", id: null })).catch(() => {});
  });
  // "end" (time limit): EventSource reconnects by itself after the server's retry delay.
}

export function onContentChange(handler) {
  handlers.push(handler);
  connect();
}
