// Settings → Database → Your data → Import: choose an export file, see it uploaded,
// checked and written (POST /api/import, then GET /api/import/{id}), then the result.
// What the server says reaches the page through textContent only.

import { TAB_ID, api, checked, signInAgain } from "/static/js/api.js";

const $ = (selector) => document.querySelector(selector);
const ui = {
  file: $("[data-import-file]"),
  button: $("[data-import-button]"),
  status: $("[data-import-status]"),
  phase: $("[data-import-phase]"),
  figures: $("[data-import-figures]"),
  progress: $("[data-import-progress]"),
  message: $("[data-import-message]"),
  hint: $("[data-import-hint]"),
};

const number = new Intl.NumberFormat();
const megabytes = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function show({ phase, figures = "", percent = null, message = "", hint = "", state = "" }) {
  ui.status.hidden = false;
  ui.status.dataset.state = state;
  ui.phase.textContent = phase;
  ui.figures.textContent = figures;
  if (percent === null) ui.progress.removeAttribute("value");
  else ui.progress.value = Math.max(0, Math.min(100, percent));
  ui.progress.hidden = state === "done" || state === "failed";
  ui.message.textContent = message;
  ui.hint.textContent = hint;
}

function busy(on) {
  ui.file.disabled = on;
  ui.button.classList.toggle("is-busy", on);
  ui.button.setAttribute("aria-disabled", on ? "true" : "false");
}

const SOURCES = { byodb: "byodb export", chatgpt: "ChatGPT export", claude: "Claude export" };

function result(job) {
  const rows = job.result.rows || {};
  const parts = Object.entries(rows).map(([table, n]) => `${number.format(n)} ${table}`);
  const what = parts.length ? parts.join(", ") : "nothing to import";
  return `${SOURCES[job.source] || "File"}: ${what}. ${number.format(job.result.created)} new, `
    + `${number.format(job.result.already_present)} already there.`;
}

// One job as the panel shows it; true once it has ended.
function render(job) {
  if (job.status === "completed") {
    show({ phase: "Imported", message: result(job), state: "done" });
    return true;
  }
  if (job.status === "failed") {
    const error = job.error || {};
    show({ phase: "Import failed", message: error.message || "The import failed.",
           hint: error.hint || "Nothing was imported.", state: "failed" });
    return true;
  }
  if (job.phase === "Receiving") {
    show({ phase: "Uploading", figures: job.bytes ? megabytes(job.bytes) : "" });
  } else if (job.phase === "Checking") {
    const total = job.bytes_total || 0;
    show({ phase: "Checking the file",
           figures: total ? `${megabytes(job.bytes_checked || 0)} of ${megabytes(total)}` : "",
           percent: total ? (100 * (job.bytes_checked || 0)) / total : null });
  } else {
    const total = job.total || 0;
    show({ phase: job.phase === "Queued" ? "Starting to write" : "Writing",
           figures: total ? `${number.format(job.written || 0)} of ${number.format(total)} rows` : "",
           percent: total ? (100 * (job.written || 0)) / total : null });
  }
  return false;
}

async function follow(id) {
  for (;;) {
    let job;
    try {
      job = await api("GET", `/api/import/${encodeURIComponent(id)}`);
    } catch (error) {
      show({ phase: "Import status unavailable", message: error.message, hint: error.hint || "",
             state: "failed" });
      return;
    }
    if (render(job)) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// The upload, with its progress (fetch cannot report an upload's progress; XHR can).
function send(file, onProgress) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/import");
    request.withCredentials = true;
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-Byodb-Tab", TAB_ID);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    };
    request.upload.onload = () => onProgress(null, null);
    request.onload = () => resolve(new Response(request.responseText, {
      status: request.status, headers: { "Content-Type": "application/json" } }));
    request.onerror = () => resolve(null);
    const form = new FormData();
    form.append("file", file);
    request.send(form);
  });
}

async function start(file) {
  busy(true);
  let checking = null;
  try {
    show({ phase: "Uploading", figures: megabytes(file.size), percent: 0 });
    const response = await send(file, (loaded, total) => {
      if (loaded === null) {
        // Uploaded: the server checks it now; follow its progress until it answers.
        show({ phase: "Checking the file" });
        checking = setInterval(async () => {
          try {
            const { items } = await api("GET", "/api/import");
            if (items.length && items[0].status === "running") render(items[0]);
          } catch { /* the answer to the upload will say */ }
        }, 1000);
        return;
      }
      show({ phase: "Uploading", figures: `${megabytes(loaded)} of ${megabytes(total)}`,
             percent: (100 * loaded) / total });
    });
    if (checking) clearInterval(checking);
    if (response === null) {
      show({ phase: "Import failed", message: "byodb could not be reached.",
             hint: "Check your connection and try again.", state: "failed" });
      return;
    }
    if (response.status === 401) { signInAgain(); return; }
    try {
      await checked(response);
    } catch (error) {
      show({ phase: "Import refused", message: error.message,
             hint: error.hint || "Nothing was imported.", state: "failed" });
      return;
    }
    const job = await response.json();
    if (!render(job)) await follow(job.id);
  } finally {
    if (checking) clearInterval(checking);
    busy(false);
    ui.file.value = "";
  }
}

ui.file.addEventListener("change", () => {
  const [file] = ui.file.files;
  if (file) start(file);
});

// An import still running (this tab was reloaded, or another tab started it): follow it.
api("GET", "/api/import").then(({ items }) => {
  const running = items.find((job) => job.status === "running");
  if (running) follow(running.id);
}).catch(() => { /* no panel then */ });
