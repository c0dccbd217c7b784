// "Plan a season": a preset button selects the preset and shows its values in the blank
// fields (read from the page's JSON, no inline script: the page may run under a CSP).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var data = document.getElementById("plan-presets");
    var form = document.getElementById("plan-season");
    if (!data || !form) return;
    var presets = JSON.parse(data.textContent);
    form.querySelectorAll("[data-preset]").forEach(function (button) {
      button.addEventListener("click", function () {
        var name = button.getAttribute("data-preset");
        form.elements.preset.value = name;
        Object.keys(presets[name]).forEach(function (key) {
          var field = form.elements[key];
          if (field && "value" in field) field.value = presets[name][key];
        });
      });
    });
  });
})();
