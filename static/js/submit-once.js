// Forms marked data-submit-once are sent once: a second click (or Enter) while the first
// request runs does nothing, and the button says what is happening (data-busy-label).
// The server stays the guard (each such form carries a key); this spares the second request.
(function () {
  "use strict";

  function buttons(form) {
    return form.querySelectorAll("button[type=submit], input[type=submit]");
  }

  function setLabel(button, label) {
    if (button.tagName === "INPUT") {
      button.value = label;
    } else {
      button.textContent = label;
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-submit-once")) {
      return;
    }
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "true";
    form.setAttribute("aria-busy", "true");
    var label = form.dataset.busyLabel;
    // After the browser has read the form: a button disabled during this event would drop
    // its own name and value from the request.
    window.setTimeout(function () {
      buttons(form).forEach(function (button) {
        button.disabled = true;
        if (label) {
          button.dataset.idleLabel = button.tagName === "INPUT" ? button.value : button.textContent;
          setLabel(button, label);
        }
      });
    }, 0);
  });

  // Back to a page kept in the browser's cache: its form may be sent again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) {
      return;
    }
    document.querySelectorAll("form[data-submit-once][data-submitting]").forEach(function (form) {
      delete form.dataset.submitting;
      form.removeAttribute("aria-busy");
      buttons(form).forEach(function (button) {
        button.disabled = false;
        if (button.dataset.idleLabel) {
          setLabel(button, button.dataset.idleLabel);
        }
      });
    });
  });
})();
