// Loaded on every page: loading state for plain forms, and relative times kept fresh.
import { h, timeAgo } from "./api.js";

for (const form of document.querySelectorAll("form[data-busy-form]")) {
  form.addEventListener("submit", () => {
    const button = form.querySelector("button[type=submit]");
    if (!button) return;
    // Disable after the browser has read the form, so the submission still happens.
    setTimeout(() => {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      button.prepend(h("span", { class: "spinner", "aria-hidden": "true" }));
    }, 0);
  });
}

setInterval(() => {
  for (const node of document.querySelectorAll("time[datetime]")) {
    node.textContent = timeAgo(node.getAttribute("datetime"));
  }
}, 30_000);
