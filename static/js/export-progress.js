// The export page while the worker writes the bundle: read the page again every few
// seconds (the server renders the progress), until it says the bundle is ready or failed.
(function () {
  "use strict";
  var panel = document.querySelector("[data-export-waiting]");
  if (!panel) {
    return;
  }
  var seconds = parseInt(panel.getAttribute("data-refresh-seconds"), 10) || 2;
  window.setTimeout(function () {
    window.location.reload();
  }, seconds * 1000);
})();
