/* A refused form: focus goes to the error summary at the top of the page, so that a keyboard
   or screen-reader user meets the reasons first. A link in it focuses its field and scrolls
   the field's label into view with it (a plain jump to the input would hide the label). */
(function () {
  "use strict";
  var summary = document.querySelector("[data-error-summary]");
  if (!summary) {
    return;
  }
  summary.focus();
  summary.addEventListener("click", function (event) {
    var link = event.target.closest("a[href^='#']");
    var target = link && document.getElementById(link.getAttribute("href").slice(1));
    if (!target) {
      return;
    }
    event.preventDefault();
    // crispy wraps each field, label and all, in div_<id>.
    (target.closest("[id^='div_']") || target).scrollIntoView();
    target.focus({ preventScroll: true });
  });
})();
