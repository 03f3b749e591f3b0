// After django-otp-webauthn's script registers a passkey, go on to the page that confirms it
// (and shows the recovery codes once). A file, not an inline script: the CSP allows no other.
document.addEventListener("otp_webauthn.register_complete", function (event) {
  var button = event.target.closest("[data-done-url]");
  if (button) {
    window.location.assign(button.getAttribute("data-done-url"));
  }
});
