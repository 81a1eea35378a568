// The run page's script (served as a file: the pages' Content-Security-Policy runs no inline script).
// It loads the timeline's next parts as the reader scrolls, and whole bodies on demand. Everything
// it inserts was rendered and escaped by the server (the same template as the page's first part),
// or is set as text.
"use strict";

(function () {
  const more = document.getElementById("more");
  const timeline = document.getElementById("timeline");
  let loading = false;

  async function loadPart() {
    if (!more || loading || !more.dataset.after) return;
    loading = true;
    const button = document.getElementById("load-more");
    if (button) button.disabled = true;
    try {
      const url = more.dataset.url + "?after=" + encodeURIComponent(more.dataset.after);
      const answer = await fetch(url, { credentials: "same-origin" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const part = await answer.json();
      timeline.insertAdjacentHTML("beforeend", part.html);
      if (part.next) {
        more.dataset.after = part.next;
      } else {
        more.remove();
      }
    } catch (error) {
      more.appendChild(document.createTextNode(" could not load: " + error.message));
    } finally {
      loading = false;
      if (button) button.disabled = false;
    }
  }

  if (more) {
    document.getElementById("load-more").addEventListener("click", loadPart);
    if ("IntersectionObserver" in window) {
      const seen = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) loadPart();
      }, { rootMargin: "800px" });
      seen.observe(more);
    }
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("button.load-body");
    if (!button) return;
    button.disabled = true;
    const answer = await fetch(button.dataset.url, { credentials: "same-origin" });
    const text = await answer.text();
    const pre = document.createElement("pre");
    pre.className = "body whole";
    try {
      pre.textContent = JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      pre.textContent = text;
    }
    const shown = button.parentElement.querySelector("pre.body");
    if (shown) shown.replaceWith(pre); else button.before(pre);
    button.remove();
  });
})();
