// A simple content page (notes, tasks, memories): list, create, edit, delete, against the
// REST conventions GET /api/x → {items}, POST 201, PATCH /api/x/{id}, DELETE 204.
// A missing endpoint is said plainly instead of failing silently.
import { api, busy, h, openDialog, readJson, replaceChildren, showError, timeElement,
         toast } from "./api.js";
import { isBlocked, onReconnect } from "./blocker.js";
import { onContentChange } from "./live.js";

const config = readJson("collection-config");
const $ = (selector) => document.querySelector(selector);
const ui = {
  unavailable: $("[data-unavailable]"),
  formCard: $("[data-form-card]"),
  formTitle: $("[data-form-title]"),
  form: $("[data-item-form]"),
  formError: $("[data-form-error]"),
  submit: $("[data-submit]"),
  cancelEdit: $("[data-cancel-edit]"),
  listStatus: $("[data-list-status]"),
  list: $("[data-item-list]"),
  deleteDialog: $("[data-delete-dialog]"),
};
const fields = Object.fromEntries(config.fields.map((f) => [f.name, f]));
let items = [];
let editing = null;

function plural() { return config.title.toLowerCase(); }

function optionLabel(field, value) {
  const option = (field.options || []).find(([v]) => v === value);
  return option ? option[1] : value;
}

function displayValue(name, value) {
  const field = fields[name];
  if (value === null || value === undefined || value === "") return null;
  if (field && field.kind === "select") return optionLabel(field, value);
  if (field && field.kind === "date") return `Due ${String(value).slice(0, 10)}`;
  return String(value);
}

function itemTitle(item) {
  const text = String(item[config.title_field] ?? "").trim();
  return text.length > 120 ? `${text.slice(0, 117)}…` : text || `Untitled ${config.singular}`;
}

function itemNode(item) {
  const badges = config.badges
    .map((name) => [name, displayValue(name, item[name])])
    .filter(([, value]) => value)
    .map(([name, value]) => h("span", { class: `badge badge-${name}-${String(item[name]).replace(/[^a-z_]/gi, "")}` }, value));
  const actions = h("div", { class: "item-actions" });
  for (const quick of config.quick_actions) {
    const skip = Object.entries(quick.unless || {}).every(([k, v]) => item[k] === v);
    if (skip) continue;
    const button = h("button", { type: "button", class: "btn btn-secondary btn-small" }, quick.label);
    button.addEventListener("click", () => update(item, quick.changes, button));
    actions.append(button);
  }
  const edit = h("button", { type: "button", class: "btn btn-quiet btn-small",
                             "aria-label": `Edit ${itemTitle(item)}` }, "Edit");
  edit.addEventListener("click", () => startEdit(item));
  const remove = h("button", { type: "button", class: "btn btn-quiet btn-small btn-danger-text",
                               "aria-label": `Delete ${itemTitle(item)}` }, "Delete");
  remove.addEventListener("click", () => confirmDelete(item));
  actions.append(edit, remove);
  const body = config.body_field && item[config.body_field]
    ? h("p", { class: "item-body" }, item[config.body_field]) : null;
  return h("li", { class: "item", id: `item-${item.id}` },
    h("div", { class: "item-main" },
      h("h3", { class: "item-title" }, itemTitle(item)),
      body,
      h("div", { class: "item-meta" }, ...badges,
        item.updated_at || item.created_at
          ? h("span", { class: "muted small" }, "Updated ", timeElement(item.updated_at || item.created_at))
          : null)),
    actions);
}

function render() {
  replaceChildren(ui.list, items.map(itemNode));
  ui.listStatus.hidden = items.length > 0;
  if (!items.length) replaceChildren(ui.listStatus, config.empty);
}

function markUnavailable(message) {
  ui.unavailable.textContent = message;
  ui.unavailable.hidden = false;
  for (const control of ui.form.elements) control.disabled = true;
}

async function load() {
  ui.listStatus.hidden = false;
  replaceChildren(ui.listStatus, h("span", { class: "spinner", "aria-hidden": "true" }), " Loading…");
  try {
    const body = await api("GET", config.api);
    items = Array.isArray(body) ? body : (body.items || []);
    render();
  } catch (error) {
    if (error.status === 404 || error.status === 405) {
      markUnavailable(`${config.title} aren't available on this server yet. This page starts working as soon as the ${plural()} API is installed.`);
      replaceChildren(ui.listStatus, `No ${plural()} to show.`);
    } else if (error.code === "byod_unavailable") {
      replaceChildren(ui.listStatus, `Your ${plural()} are on your database, which is unreachable right now.`);
    } else {
      replaceChildren(ui.listStatus, `Couldn't load your ${plural()}. ${error.message}`);
    }
  }
}

function formValues({ forUpdate }) {
  const values = {};
  for (const field of config.fields) {
    const control = ui.form.elements[field.name];
    let value = control.value;
    if (field.kind !== "select") value = value.trim();
    if (field.kind === "date" && value) value = `${value}T00:00:00Z`;
    if (value === "") {
      if (forUpdate) values[field.name] = null;
      continue;
    }
    values[field.name] = value;
  }
  return values;
}

function firstMissing() {
  return config.fields.find((f) => f.required && !ui.form.elements[f.name].value.trim());
}

function resetForm() {
  editing = null;
  ui.form.reset();
  ui.formTitle.textContent = `New ${config.singular}`;
  ui.submit.textContent = `Add ${config.singular}`;
  ui.cancelEdit.hidden = true;
  showError(ui.formError, null);
}

function startEdit(item) {
  editing = item;
  for (const field of config.fields) {
    const value = item[field.name];
    ui.form.elements[field.name].value = value === null || value === undefined ? ""
      : field.kind === "date" ? String(value).slice(0, 10) : String(value);
  }
  ui.formTitle.textContent = `Edit ${config.singular}`;
  ui.submit.textContent = "Save changes";
  ui.cancelEdit.hidden = false;
  showError(ui.formError, null);
  ui.formCard.scrollIntoView({ behavior: "smooth", block: "start" });
  ui.form.elements[config.fields[0].name].focus();
}

async function update(item, changes, button) {
  try {
    const saved = await busy(button, () => api("PATCH", `${config.api}/${encodeURIComponent(item.id)}`, changes));
    items = items.map((i) => (i.id === item.id ? saved : i));
    render();
    toast("Saved.", "success");
  } catch (error) {
    if (error.code !== "byod_unavailable") {
      toast(error.status === 404 || error.status === 405
        ? `Changing ${plural()} isn't supported by this server yet.` : error.message, "error");
    }
  }
}

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const missing = firstMissing();
  if (missing) {
    showError(ui.formError, { message: `${missing.label} is required.` });
    ui.form.elements[missing.name].focus();
    return;
  }
  showError(ui.formError, null);
  const wasEditing = editing;
  try {
    if (wasEditing) {
      const saved = await busy(ui.submit, () => api("PATCH",
        `${config.api}/${encodeURIComponent(wasEditing.id)}`, formValues({ forUpdate: true })));
      items = items.map((i) => (i.id === wasEditing.id ? saved : i));
      toast("Changes saved.", "success");
    } else {
      const created = await busy(ui.submit, () => api("POST", config.api, formValues({ forUpdate: false })));
      items = [created, ...items];
      toast(`${config.singular[0].toUpperCase()}${config.singular.slice(1)} added.`, "success");
    }
    resetForm();
    render();
  } catch (error) {
    if (error.status === 404 && !wasEditing || error.status === 405) {
      showError(ui.formError, { message: `Saving ${plural()} isn't supported by this server yet.` });
    } else if (error.code !== "byod_unavailable") {
      showError(ui.formError, error);
    }
  }
});

ui.cancelEdit.addEventListener("click", resetForm);

function confirmDelete(item) {
  ui.deleteDialog.querySelector("[data-delete-name]").textContent = itemTitle(item);
  ui.deleteDialog.dataset.id = item.id;
  openDialog(ui.deleteDialog);
}

ui.deleteDialog.querySelector("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = ui.deleteDialog.dataset.id;
  const button = event.submitter || ui.deleteDialog.querySelector("[type=submit]");
  const error = ui.deleteDialog.querySelector("[data-dialog-error]");
  try {
    await busy(button, () => api("DELETE", `${config.api}/${encodeURIComponent(id)}`));
    ui.deleteDialog.close();
    items = items.filter((i) => i.id !== id);
    if (editing && editing.id === id) resetForm();
    render();
    toast("Deleted.", "success");
  } catch (failure) {
    showError(error, failure.status === 405
      ? { message: `Deleting ${plural()} isn't supported by this server yet.` } : failure);
  }
});

onReconnect(load);
if (!isBlocked()) load();
// Another tab changed this list (BYOD_REALTIME): show the new state.
onContentChange((change) => {
  if (!isBlocked() && (change.area === "*" || config.api === `/api/${change.area}`)) return load();
  return null;
});
