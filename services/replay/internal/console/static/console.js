// Switchyard console: progressive enhancement only; every page works
// without it. Served as a file ('self' in the CSP), never inline.
"use strict";

// Purging deletes at once: ask first.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var purge = form.querySelector('input[name="mode"][value="purge"]');
  if (purge && purge.checked && !window.confirm("Purge deletes this dead letter now, with no archive. Continue?")) {
    event.preventDefault();
  }
});

// Live progress: an element with data-refresh="ms" is fetched again from
// the page's own address every so often and replaced in place, until the
// server renders it without data-refresh (the operation finished).
(function () {
  var el = document.querySelector("[data-refresh]");
  if (!el || !window.fetch || !window.DOMParser) {
    return;
  }
  var every = Math.max(1000, parseInt(el.getAttribute("data-refresh"), 10) || 2000);
  function tick() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById(el.id);
        if (!next) {
          return;
        }
        el.replaceWith(next);
        el = next;
        if (next.hasAttribute("data-refresh")) {
          window.setTimeout(tick, every);
        } else {
          // Finished: the cancel form no longer applies.
          var cancel = document.getElementById("cancel");
          if (cancel && cancel.form) {
            cancel.form.remove();
          }
        }
      })
      .catch(function () { window.setTimeout(tick, every * 2); });
  }
  window.setTimeout(tick, every);
})();
