// The assistant's page: the question goes to /assistant/stream (server-sent events) and the answer is
// written as it arrives. Without JavaScript the form asks /assistant?q= and the server writes it all.
(function () {
  "use strict";
  var form = document.getElementById("ask");
  if (!form || !window.EventSource) return;
  var input = form.elements.q;
  var result = document.getElementById("result");
  var answer = document.getElementById("answer");
  var sources = document.getElementById("sources");
  var error = document.getElementById("error");
  var current = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  // [n] in the answer becomes a link to source n; everything else stays plain text.
  function renderAnswer(text, count) {
    answer.textContent = "";
    var re = /\[(\d+)\]/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      var n = parseInt(m[1], 10);
      if (n < 1 || n > count) continue;
      answer.appendChild(document.createTextNode(text.slice(last, m.index)));
      answer.appendChild(el("a", { href: "#source-" + n, "class": "cite" }, "[" + n + "]"));
      last = re.lastIndex;
    }
    answer.appendChild(document.createTextNode(text.slice(last)));
  }

  function showSources(list) {
    sources.textContent = "";
    if (!list.length) sources.appendChild(el("li", { "class": "none" }, "Nothing in the library matches this question."));
    list.forEach(function (p) {
      var li = el("li", { id: "source-" + p.n });
      li.appendChild(el("a", { href: p.url }, p.title));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("small", { "class": "book" }, p.book));
      li.appendChild(el("p", {}, p.text));
      sources.appendChild(li);
    });
  }

  function ask(question) {
    if (current) current.close();
    result.hidden = false;
    error.hidden = true;
    error.className = "error";
    answer.textContent = "";
    answer.classList.add("writing");
    sources.textContent = "";
    var text = "", count = 0;
    var source = current = new EventSource("/assistant/stream?q=" + encodeURIComponent(question));
    function finish() { source.close(); answer.classList.remove("writing"); document.body.dataset.assistant = "done"; }
    source.addEventListener("passages", function (e) {
      var list = JSON.parse(e.data);
      count = list.length;
      showSources(list);
    });
    source.addEventListener("delta", function (e) {
      text += JSON.parse(e.data).text;
      renderAnswer(text, count);
    });
    source.addEventListener("done", function (e) {
      var info = JSON.parse(e.data);
      // The note matters only when a model was expected: the page already says when none runs.
      var expected = document.getElementById("modelstate").dataset.available === "yes";
      if (!info.answered && info.message && expected) {
        error.textContent = info.message;
        error.className = "note";
        error.hidden = false;
      }
      finish();
    });
    source.addEventListener("error", function (e) {
      // A server-sent "error" event carries data; a lost connection does not.
      var info = e.data ? JSON.parse(e.data) : { message: "The connection to the box was lost." };
      error.textContent = info.stage === "model" && count
        ? "The model could not answer (" + info.message + "); the sources below are what the library has."
        : info.message;
      error.hidden = false;
      finish();
    });
  }

  form.addEventListener("submit", function (e) {
    var question = input.value.trim();
    if (!question) return;
    e.preventDefault();
    history.replaceState(null, "", "/assistant?q=" + encodeURIComponent(question));
    ask(question);
  });
  document.body.dataset.assistant = "ready";
})();
