// Waiting answers, live: while the inbox or an answer's page shows one that is still being waited for, its
// JSON twin is asked every few seconds and the status line and the answer so far follow it. Once the answer
// is written the page is loaded again, so its citations come from the server like every other answer.
(function () {
  "use strict";
  if (!window.fetch) return;
  var every = parseInt(document.body.dataset.answersPoll || "2000", 10);
  var job = document.getElementById("job");
  var list = document.getElementById("jobs");
  function waiting(status) { return status === "queued" || status === "running"; }
  function progress(j) {
    var eta = j.eta_s === null ? "" : ", ready in " + (j.eta_s < 60 ? "under a minute" : "about " + Math.round(j.eta_s / 60) + " minutes");
    if (j.status === "queued") return "waiting, number " + j.position + " in line" + eta;
    if (j.status === "running") return "being written: " + j.tokens + " token" + (j.tokens === 1 ? "" : "s") + " so far" + eta;
    if (j.status === "done") return "ready" + (j.seen ? "" : " (new)");
    if (j.status === "failed") return "failed: " + j.error;
    return "cancelled";
  }
  function get(url) {
    return fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); });
  }
  if (job && waiting(job.dataset.status)) {
    (function poll() {
      get("/answers/" + job.dataset.id + "?format=json").then(function (data) {
        var j = data.job;
        if (j.status !== job.dataset.status && !waiting(j.status)) { window.location.reload(); return; }
        job.dataset.status = j.status;
        document.getElementById("progress").textContent = progress(j);
        document.getElementById("answer").textContent = j.answer;
        window.setTimeout(poll, every);
      }, function () { window.setTimeout(poll, every * 4); });
    })();
  }
  if (list && list.querySelector("li[data-status=queued], li[data-status=running]")) {
    (function poll() {
      get("/answers?format=json").then(function (data) {
        var still = false;
        data.jobs.forEach(function (j) {
          var li = document.getElementById("job-" + j.id);
          if (!li) return;
          li.dataset.status = j.status;
          li.querySelector(".status").textContent = progress(j);
          if (waiting(j.status)) still = true;
        });
        document.body.dataset.inbox = still ? "waiting" : "settled";
        if (still) window.setTimeout(poll, every);
      }, function () { window.setTimeout(poll, every * 4); });
    })();
  }
})();
