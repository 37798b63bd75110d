// Shared helpers: the JSON API client, safe DOM building, loading states, toasts, times.
// User content only ever reaches the page through textContent (never innerHTML).

// This tab's id, sent with every write so the live-update stream can tell this tab's own
// changes from the other tabs' (live.js).
export const TAB_ID = crypto.randomUUID ? crypto.randomUUID()
  : Math.random().toString(36).slice(2) + Date.now().toString(36);

export class ApiError extends Error {
  constructor(status, code, message, hint = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = body && body.error ? body.error : {};
  const fallback = response.status >= 500
    ? "Something went wrong on the server. Please try again."
    : `The request failed (${response.status}).`;
  return new ApiError(response.status, error.code || "error", error.message || fallback,
                      error.hint || null);
}

// Tell the page that the user's database is unavailable (the blocker takes over).
function announceUnavailable(error) {
  document.dispatchEvent(new CustomEvent("byodb:unavailable", { detail: error }));
}

export function signInAgain() {
  const next = location.pathname + location.search;
  location.assign(`/signin?next=${encodeURIComponent(next)}`);
}

// Check a fetch response: returns it when ok, otherwise throws an ApiError (after telling
// the blocker about 503 byod_unavailable, and sending a signed-out user to sign in).
export async function checked(response) {
  if (response.ok) return response;
  const error = await errorFrom(response);
  if (response.status === 401) signInAgain();
  if (response.status === 503 && error.code === "byod_unavailable") announceUnavailable(error);
  throw error;
}

export async function api(method, path, body = undefined) {
  return (await request(method, path, body)).data;
}

// Like api(), with the response's status too (202: the server queued the work).
export async function request(method, path, body = undefined) {
  const init = { method, headers: { Accept: "application/json", "X-Byodb-Tab": TAB_ID },
                 credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "byodb could not be reached. Check your connection and try again.");
  }
  await checked(response);
  const type = response.headers.get("content-type") || "";
  const data = response.status !== 204 && type.includes("application/json")
    ? await response.json() : null;
  return { status: response.status, data };
}

// Build an element: h("p", {class: "x", onclick: fn}, "text", child, ...). Strings become text.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function replaceChildren(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

// Run an async action with a loading state on a button: disabled, aria-busy, spinner, label.
export async function busy(button, action, label = null) {
  if (!button) return action();
  const original = button.textContent;
  const wasDisabled = button.disabled;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.classList.add("is-busy");
  if (label) button.textContent = label;
  button.prepend(h("span", { class: "spinner", "aria-hidden": "true" }));
  try {
    return await action();
  } finally {
    button.querySelector(":scope > .spinner")?.remove();
    if (label) button.textContent = original;
    button.classList.remove("is-busy");
    button.removeAttribute("aria-busy");
    button.disabled = wasDisabled;
  }
}

export function toast(message, kind = "info", timeoutMs = 5000) {
  const region = document.getElementById("toasts");
  if (!region) return;
  const item = h("div", { class: `toast toast-${kind}` }, message);
  region.append(item);
  setTimeout(() => item.remove(), timeoutMs);
}

export function showError(node, error) {
  if (!node) return;
  node.textContent = error ? (error.hint ? `${error.message} ${error.hint}` : error.message) : "";
  node.hidden = !error;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function timeAgo(iso) {
  if (!iso) return "never";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"], [4.35, "week"],
                 [12, "month"], [Infinity, "year"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return absolute.format(new Date(iso));
}

export function timeElement(iso) {
  if (!iso) return h("span", { class: "muted" }, "never");
  return h("time", { datetime: iso, title: absolute.format(new Date(iso)) }, timeAgo(iso));
}

export function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

// A dialog's standard wiring: cancel buttons close it; the error line is reset on open.
export function openDialog(dialog) {
  const error = dialog.querySelector("[data-dialog-error]");
  if (error) showError(error, null);
  for (const cancel of dialog.querySelectorAll("[data-dialog-cancel]")) {
    cancel.onclick = () => dialog.close("cancel");
  }
  dialog.showModal();
}
