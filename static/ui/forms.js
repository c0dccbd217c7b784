// Small page behaviours that used to be inline handlers (the Content Security Policy
// allows no inline script; see docs/security.md).
//
// <form data-busy-label="Working…" data-busy-button="start">: on submit, the named
// submit button shows the label and is disabled (so a second click does not post twice);
// a hidden input keeps its name in the posted data.
// <a data-history-back href="/fallback/">: goes back in history when there is one.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var label = form.getAttribute("data-busy-label");
    if (!label) { return; }
    var name = form.getAttribute("data-busy-button") || "submit";
    var button = form.querySelector('[name="' + name + '"]');
    if (!button) { return; }
    button.value = label;
    button.disabled = true;
    var hidden = document.createElement("input");
    hidden.type = "hidden";
    hidden.name = name;
    hidden.value = "1";
    form.appendChild(hidden);
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-history-back]");
    if (link && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });
})();
