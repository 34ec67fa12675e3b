// The header's "N answers ready": while this device has answers waiting, /answers/ready is asked every few
// seconds and the badge follows it, so an answer written while the page is open shows up without a reload.
(function () {
  "use strict";
  var badge = document.getElementById("answers-ready");
  if (!badge || !window.fetch) return;
  var every = parseInt(document.body.dataset.answersPoll || "5000", 10);
  function show(ready) {
    badge.textContent = ready + " answer" + (ready === 1 ? "" : "s") + " ready";
    badge.hidden = ready === 0;
  }
  function poll() {
    fetch("/answers/ready", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        show(data.ready);
        document.body.dataset.answersWaiting = String(data.waiting);
        if (data.waiting > 0) window.setTimeout(poll, every);
      }, function () { window.setTimeout(poll, every * 4); });
  }
  // A page can start the polling (the assistant page, after asking the deep model) by firing this event.
  document.addEventListener("almanac:waiting", function () { window.setTimeout(poll, every); });
  if (parseInt(document.body.dataset.answersWaiting || "0", 10) > 0) window.setTimeout(poll, every);
})();
