// Reload a page that asks for it (data-refresh-s on <main>) unless the operator paused it.
// The only script on the operator's page; served by us, so the CSP needs no 'unsafe-inline'.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh-s]");
  var toggle = document.getElementById("auto-refresh");
  if (!main || !toggle) {
    return;
  }
  var seconds = Number(main.getAttribute("data-refresh-s")) || 10;
  var key = "reconciler.admin_ui.refresh";
  toggle.checked = window.localStorage.getItem(key) !== "paused";
  toggle.addEventListener("change", function () {
    window.localStorage.setItem(key, toggle.checked ? "on" : "paused");
  });
  window.setInterval(function () {
    var busy = document.activeElement && /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)
      && document.activeElement !== toggle;
    if (toggle.checked && !document.hidden && !busy) {
      window.location.reload();
    }
  }, seconds * 1000);
})();
