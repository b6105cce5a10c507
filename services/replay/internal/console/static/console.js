// Switchyard console: progressive enhancement only; every page works
// without it. Served as a file ('self' in the CSP), never inline.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var purge = form.querySelector('input[name="mode"][value="purge"]');
  if (purge && purge.checked && !window.confirm("Purge deletes this dead letter now, with no archive. Continue?")) {
    event.preventDefault();
  }
});
