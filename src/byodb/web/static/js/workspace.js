// The chat workspace: conversation list (pinned first, then by last message), the message
// view, the composer with the streamed reply, conversation actions, and search.
import { ApiError, TAB_ID, api, busy, checked, clear, h, openDialog, readJson,
         replaceChildren, showError, timeElement, toast } from "./api.js";
import { isBlocked, onReconnect } from "./blocker.js";
import { onContentChange } from "./live.js";

const $ = (selector) => document.querySelector(selector);
const ui = {
  sidebar: $("#sidebar"),
  sidebarToggle: $("[data-sidebar-toggle]"),
  listStatus: $("[data-list-status]"),
  pinnedTitle: $("[data-pinned-title]"),
  pinnedList: $("[data-pinned-list]"),
  recentTitle: $("[data-recent-title]"),
  recentList: $("[data-recent-list]"),
  archivedToggle: $("[data-toggle-archived]"),
  archivedList: $("[data-archived-list]"),
  title: $("[data-chat-title]"),
  actions: $("[data-chat-actions]"),
  messages: $("[data-messages]"),
  composer: $("[data-composer]"),
  input: $("#composer-input"),
  send: $("[data-send]"),
  searchForm: $("[data-search-form]"),
  searchResults: $("[data-search-results]"),
  searchList: $("[data-search-list]"),
  searchStatus: $("[data-search-status]"),
  searchTitle: $("[data-search-title]"),
  nav: $("[data-conversation-nav]"),
  renameDialog: $("[data-rename-dialog]"),
  deleteDialog: $("[data-delete-dialog]"),
};

const state = {
  conversations: [],
  archived: [],
  showArchived: false,
  current: null,      // the open conversation (object) or null for a new chat
  streaming: false,
  view: 0,            // bumped by each open, new chat and send: a load that finds it
                      // changed when it returns was overtaken and shows nothing
};

function nextView() {
  state.view += 1;
  return state.view;
}

// ---- conversation list ---------------------------------------------------------------

function conversationTitle(conversation) {
  return conversation.title || "Untitled conversation";
}

function conversationItem(conversation) {
  const active = state.current && state.current.id === conversation.id;
  const when = conversation.last_message_at || conversation.created_at;
  const link = h("a", {
    href: `/?c=${encodeURIComponent(conversation.id)}`,
    class: "conversation-link",
    "aria-current": active ? "true" : null,
    onclick: (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey) return;
      event.preventDefault();
      openConversation(conversation.id, { push: true });
    },
  },
  h("span", { class: "conversation-name" },
    conversation.is_pinned ? h("span", { class: "pin-mark", "aria-label": "Pinned" }, "📌 ") : null,
    conversationTitle(conversation)),
  h("span", { class: "conversation-meta" }, timeElement(when)));
  return h("li", {}, link);
}

function renderList() {
  const pinned = state.conversations.filter((c) => c.is_pinned);
  const recent = state.conversations.filter((c) => !c.is_pinned);
  replaceChildren(ui.pinnedList, pinned.map(conversationItem));
  replaceChildren(ui.recentList, recent.map(conversationItem));
  ui.pinnedTitle.hidden = pinned.length === 0;
  ui.recentTitle.hidden = recent.length === 0 || pinned.length === 0;
  if (state.conversations.length === 0) {
    ui.listStatus.hidden = false;
    replaceChildren(ui.listStatus, byod && byod.kept_on_own_database
      ? "No conversations on byodb yet. Your earlier ones stay on the database you disconnected."
      : "No conversations yet. Say hello below.");
  } else {
    ui.listStatus.hidden = true;
  }
  ui.archivedList.hidden = !state.showArchived;
  if (state.showArchived) {
    replaceChildren(ui.archivedList, state.archived.length
      ? state.archived.map(conversationItem)
      : [h("li", { class: "muted small empty-line" }, "No archived conversations.")]);
  }
}

async function loadConversations() {
  try {
    const [active, archived] = await Promise.all([
      api("GET", "/api/conversations?limit=200"),
      state.showArchived ? api("GET", "/api/conversations?archived=true&limit=200")
                         : Promise.resolve({ items: state.archived }),
    ]);
    state.conversations = active.items;
    state.archived = archived.items;
    renderList();
  } catch (error) {
    ui.listStatus.hidden = false;
    replaceChildren(ui.listStatus, error.code === "byod_unavailable"
      ? "Your conversations are on your database, which is unreachable right now."
      : `Couldn't load your conversations. ${error.message}`);
  }
}

function findConversation(id) {
  return state.conversations.find((c) => c.id === id) || state.archived.find((c) => c.id === id);
}

// ---- messages ------------------------------------------------------------------------

// The user's BYOD state as the page last saw it; read again after a reconnect, so the
// texts below never describe the state from before it.
let byod = readJson("byod-state");

async function refreshByod() {
  try { byod = await api("GET", "/api/byod"); } catch { /* keep what we have */ }
}

function storageNote() {
  if (byod && byod.content_on_own_database) {
    return byod.database ? `Messages are saved only on your database (${byod.database}).`
                         : "Messages are saved only on your database.";
  }
  return "Messages are saved on byodb's database. You can use your own in Settings → Database.";
}

// After "Disconnect → keep" the earlier conversations are on the database the user left:
// say where they are and how to get them back, instead of an unexplained empty list.
function keptNote() {
  if (!byod || !byod.kept_on_own_database) return null;
  return h("div", { class: "kept-note", "data-kept-note": true },
    h("p", {}, h("strong", {}, "Looking for your earlier conversations? "),
      "They are still on your own database: you chose to keep them there when you disconnected it."),
    h("p", { class: "muted small" },
      "To see them here again, connect that database in ",
      h("a", { href: "/settings/database" }, "Settings → Database"),
      " (what you wrote since is merged with them). To bring them back to byodb's database for good, connect it and then disconnect with “Move it back to byodb”. Any PostgreSQL tool can read them meanwhile."));
}

function emptyChat() {
  return h("div", { class: "empty-chat", "data-empty-chat": true },
    h("h2", {}, "What's on your mind?"),
    h("p", { class: "muted", "data-storage-note": true }, storageNote()),
    keptNote());
}

function messageNode(message) {
  const mine = message.role === "user";
  const content = h("div", { class: "message-content" }, message.content || "");
  const node = h("article", {
    class: `message message-${mine ? "user" : "assistant"}`,
    "data-message-id": message.id || null,
  },
  h("p", { class: "message-author" }, mine ? "You" : "Assistant"),
  content);
  if (message.status === "error" || message.error) {
    node.append(h("p", { class: "message-error" }, message.error || "The reply failed."));
  }
  return node;
}

function renderMessages(messages) {
  clear(ui.messages);
  if (!messages.length) ui.messages.append(emptyChat());
  for (const message of messages) ui.messages.append(messageNode(message));
  scrollToEnd();
}

function scrollToEnd() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function renderHeader() {
  const conversation = state.current;
  ui.title.textContent = conversation ? conversationTitle(conversation) : "New chat";
  ui.actions.hidden = !conversation;
  document.title = `${conversation ? conversationTitle(conversation) : "Chat"} · byodb`;
  if (!conversation) return;
  const pin = ui.actions.querySelector("[data-action=pin]");
  pin.textContent = conversation.is_pinned ? "Unpin" : "Pin";
  pin.setAttribute("aria-pressed", String(Boolean(conversation.is_pinned)));
  const archive = ui.actions.querySelector("[data-action=archive]");
  archive.textContent = conversation.is_archived ? "Unarchive" : "Archive";
  archive.setAttribute("aria-pressed", String(Boolean(conversation.is_archived)));
}

async function openConversation(id, { push = false } = {}) {
  const view = nextView();
  ui.messages.setAttribute("aria-busy", "true");
  replaceChildren(ui.messages, h("p", { class: "muted loading-line" },
    h("span", { class: "spinner", "aria-hidden": "true" }), " Loading messages…"));
  try {
    const [conversation, messages] = await Promise.all([
      api("GET", `/api/conversations/${encodeURIComponent(id)}`),
      api("GET", `/api/conversations/${encodeURIComponent(id)}/messages`),
    ]);
    if (view !== state.view) return;  // the user opened another chat or sent meanwhile
    state.current = conversation;
    if (push) history.pushState({ c: id }, "", `/?c=${encodeURIComponent(id)}`);
    renderHeader();
    renderMessages(messages.items);
    renderList();
    closeSidebar();
  } catch (error) {
    if (view !== state.view) return;
    if (error.status === 404) {
      toast("That conversation no longer exists.", "error");
      newChat({ push: true });
      return;
    }
    replaceChildren(ui.messages, h("p", { class: "alert alert-error" },
      `Couldn't open the conversation. ${error.message}`));
  } finally {
    ui.messages.removeAttribute("aria-busy");
  }
}

function newChat({ push = false } = {}) {
  nextView();
  state.current = null;
  if (push) history.pushState({ c: null }, "", "/");
  renderHeader();
  renderMessages([]);
  renderList();
  closeSidebar();
  ui.input.focus();
}

// ---- sending and the streamed reply -------------------------------------------------

async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let boundary;
    while ((boundary = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary).replace(/^\r?\n\r?\n/, "");
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
    }
  }
}

function setStreaming(on) {
  state.streaming = on;
  ui.send.disabled = on;
  ui.composer.setAttribute("aria-busy", String(on));
  if (on) {
    ui.send.prepend(h("span", { class: "spinner", "aria-hidden": "true" }));
  } else {
    ui.send.querySelector(".spinner")?.remove();
  }
}

async function send(content) {
  if (state.streaming || isBlocked()) return;
  nextView();  // a chat still loading must not replace what is sent here
  setStreaming(true);
  const userNode = messageNode({ role: "user", content });
  userNode.classList.add("is-pending");
  ui.messages.querySelector("[data-empty-chat]")?.remove();
  ui.messages.append(userNode);
  const reply = messageNode({ role: "assistant", content: "" });
  const replyText = reply.querySelector(".message-content");
  reply.classList.add("is-streaming");
  reply.setAttribute("aria-busy", "true");
  replyText.append(h("span", { class: "typing", "aria-label": "Assistant is typing" },
    h("span"), h("span"), h("span")));
  ui.messages.append(reply);
  scrollToEnd();
  let sent = false;
  try {
    if (!state.current) {
      state.current = await api("POST", "/api/conversations", {});
      history.replaceState({ c: state.current.id }, "", `/?c=${encodeURIComponent(state.current.id)}`);
      renderHeader();
    }
    const response = await checked(await fetch(
      `/api/conversations/${encodeURIComponent(state.current.id)}/messages/stream`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream",
                   "X-Byodb-Tab": TAB_ID },
        body: JSON.stringify({ content }),
      }));
    let text = "";
    for await (const event of serverEvents(response)) {
      if (event.name === "user_message") {
        sent = true;
        userNode.classList.remove("is-pending");
        userNode.dataset.messageId = event.data.id;
      } else if (event.name === "delta") {
        text += event.data;
        replyText.textContent = text;
        scrollToEnd();
      } else if (event.name === "assistant_message") {
        replyText.textContent = event.data.content;
        reply.dataset.messageId = event.data.id;
        if (event.data.status === "error") {
          reply.append(h("p", { class: "message-error" }, event.data.error || "The reply failed."));
        }
      } else if (event.name === "error") {
        throw new ApiError(500, event.data.code, event.data.message);
      }
    }
  } catch (error) {
    if (!sent) {
      userNode.remove();
      ui.input.value = ui.input.value || content;
      autosize();
    }
    reply.remove();
    if (ui.messages.children.length === 0) ui.messages.append(emptyChat());
    if (error.code !== "byod_unavailable") {
      toast(sent ? `The reply failed. ${error.message}` : `Your message wasn't sent. ${error.message}`, "error", 8000);
    }
  } finally {
    reply.classList.remove("is-streaming");
    reply.removeAttribute("aria-busy");
    setStreaming(false);
  }
  if (sent) {
    await loadConversations();
    const fresh = findConversation(state.current.id);
    if (fresh) { state.current = fresh; renderHeader(); renderList(); }
  }
}

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 240)}px`;
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const content = ui.input.value.trim();
  if (!content) { ui.input.focus(); return; }
  ui.input.value = "";
  autosize();
  send(content);
});
ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.input.addEventListener("input", autosize);

// ---- conversation actions ----------------------------------------------------------

async function change(changes, button, doneMessage) {
  const id = state.current.id;
  try {
    state.current = await busy(button, () => api("PATCH", `/api/conversations/${encodeURIComponent(id)}`, changes));
    renderHeader();
    await loadConversations();
    if (doneMessage) toast(doneMessage, "success");
  } catch (error) {
    if (error.code !== "byod_unavailable") toast(error.message, "error");
  }
}

ui.actions.addEventListener("click", (event) => {
  const button = event.target.closest("[data-action]");
  if (!button || !state.current) return;
  const action = button.dataset.action;
  if (action === "pin") {
    const pin = !state.current.is_pinned;
    change({ is_pinned: pin }, button, pin ? "Pinned." : "Unpinned.");
  } else if (action === "archive") {
    const archive = !state.current.is_archived;
    change({ is_archived: archive }, button, archive ? "Archived. Find it under “Show archived”." : "Moved back to your conversations.");
  } else if (action === "rename") {
    const input = ui.renameDialog.querySelector("input");
    input.value = state.current.title || "";
    openDialog(ui.renameDialog);
    input.select();
  } else if (action === "delete") {
    ui.deleteDialog.querySelector("[data-delete-name]").textContent = conversationTitle(state.current);
    openDialog(ui.deleteDialog);
  }
});

ui.renameDialog.querySelector("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = ui.renameDialog.querySelector("input");
  const title = input.value.trim();
  const error = ui.renameDialog.querySelector("[data-dialog-error]");
  if (!title) { showError(error, { message: "Enter a title." }); input.focus(); return; }
  const button = event.submitter || ui.renameDialog.querySelector("[type=submit]");
  try {
    state.current = await busy(button, () => api("PATCH",
      `/api/conversations/${encodeURIComponent(state.current.id)}`, { title }));
    ui.renameDialog.close();
    renderHeader();
    await loadConversations();
  } catch (failure) {
    showError(error, failure);
  }
});

ui.deleteDialog.querySelector("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter || ui.deleteDialog.querySelector("[type=submit]");
  const error = ui.deleteDialog.querySelector("[data-dialog-error]");
  try {
    await busy(button, () => api("DELETE", `/api/conversations/${encodeURIComponent(state.current.id)}`));
    ui.deleteDialog.close();
    toast("Conversation deleted.", "success");
    newChat({ push: true });
    await loadConversations();
  } catch (failure) {
    showError(error, failure);
  }
});

ui.archivedToggle.addEventListener("click", async () => {
  state.showArchived = !state.showArchived;
  ui.archivedToggle.setAttribute("aria-expanded", String(state.showArchived));
  ui.archivedToggle.textContent = state.showArchived ? "Hide archived" : "Show archived";
  if (state.showArchived) {
    await busy(ui.archivedToggle, loadConversations);
  } else {
    renderList();
  }
});

$("[data-new-chat]").addEventListener("click", () => newChat({ push: true }));

// ---- search ------------------------------------------------------------------------

const TYPE_LABELS = { conversation: "Conversation", message: "Message", note: "Note",
                      memory: "Memory", file_chunk: "File", file: "File", task: "Task" };

function resultTarget(result) {
  const conversationId = result.conversation_id || (result.type === "conversation" ? result.id : null);
  if (conversationId) return { conversationId };
  if (result.type === "note") return { href: "/notes" };
  if (result.type === "memory") return { href: "/memories" };
  if (result.type === "task") return { href: "/tasks" };
  return null;
}

function resultItem(result) {
  const target = resultTarget(result);
  const body = [
    h("span", { class: "badge badge-quiet" }, TYPE_LABELS[result.type] || result.type || "Result"),
    " ",
    h("span", { class: "result-snippet" }, result.title || result.snippet || ""),
  ];
  if (!target) return h("li", { class: "result" }, ...body);
  const link = h("a", { class: "result", href: target.href || `/?c=${encodeURIComponent(target.conversationId)}` }, ...body);
  if (target.conversationId) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openConversation(target.conversationId, { push: true });
    });
  }
  return h("li", {}, link);
}

async function search(query, mode) {
  ui.searchResults.hidden = false;
  ui.nav.hidden = true;
  clear(ui.searchList);
  ui.searchTitle.textContent = `Results for “${query}”`;
  ui.searchStatus.textContent = "Searching…";
  const params = new URLSearchParams({ q: query, mode });
  try {
    const body = await busy(ui.searchForm.querySelector("[type=submit]"),
      () => api("GET", `/api/search?${params}`));
    const results = body.results || body.items || [];
    ui.searchStatus.textContent = results.length ? `${results.length} found.` : "Nothing found.";
    replaceChildren(ui.searchList, results.map(resultItem));
  } catch (error) {
    if (error.status === 404 || error.status === 405) {
      ui.searchStatus.textContent = "Search isn't available on this server yet. Your conversations are listed below it once you clear the search.";
    } else if (error.code === "byod_unavailable") {
      ui.searchStatus.textContent = "Search needs your database, which is unreachable right now.";
    } else {
      ui.searchStatus.textContent = `Search failed. ${error.message}`;
    }
  }
}

function clearSearch() {
  ui.searchResults.hidden = true;
  ui.nav.hidden = false;
  ui.searchForm.reset();
}

ui.searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const query = ui.searchForm.q.value.trim();
  if (!query) { clearSearch(); return; }
  search(query, ui.searchForm.mode.value);
});
$("[data-search-clear]").addEventListener("click", () => { clearSearch(); ui.searchForm.q.focus(); });
ui.searchForm.q.addEventListener("keydown", (event) => {
  if (event.key === "Escape") clearSearch();
});

// ---- small screens: the list is a drawer ----------------------------------------------

function closeSidebar() {
  ui.sidebar.classList.remove("is-open");
  ui.sidebarToggle.setAttribute("aria-expanded", "false");
}

ui.sidebarToggle.addEventListener("click", () => {
  const open = !ui.sidebar.classList.contains("is-open");
  ui.sidebar.classList.toggle("is-open", open);
  ui.sidebarToggle.setAttribute("aria-expanded", String(open));
  if (open) ui.sidebar.querySelector("button, a, input")?.focus();
});
document.querySelector(".chat").addEventListener("click", (event) => {
  if (ui.sidebar.classList.contains("is-open") && !ui.sidebarToggle.contains(event.target)) {
    closeSidebar();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.sidebar.classList.contains("is-open")) {
    closeSidebar();
    ui.sidebarToggle.focus();
  }
});

// ---- start -------------------------------------------------------------------------

function conversationFromUrl() {
  return new URLSearchParams(location.search).get("c");
}

window.addEventListener("popstate", () => {
  const id = conversationFromUrl();
  if (id) openConversation(id); else newChat();
});

async function start() {
  const view = state.view;
  await loadConversations();
  // Sent or opened a chat while the list loaded (a slow start): that view stays.
  if (view !== state.view) return;
  const id = conversationFromUrl();
  if (id) await openConversation(id); else newChat();
}

onReconnect(async () => { await refreshByod(); await start(); });
if (!isBlocked()) start();

// Live updates from the user's other tabs (BYOD_REALTIME): reload what this tab shows.
onContentChange(async (change) => {
  if (change.area !== "*" && change.area !== "conversations" && change.area !== "messages") return;
  await loadConversations();
  const current = state.current;
  if (!current || state.streaming) return;
  if (change.area === "*" || change.id === current.id || change.area === "messages") {
    const fresh = findConversation(current.id);
    if (!fresh) return;
    const messages = await api("GET", `/api/conversations/${encodeURIComponent(current.id)}/messages`);
    state.current = fresh;
    renderHeader();
    renderMessages(messages.items);
  }
});
