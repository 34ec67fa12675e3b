// The assistant's page: each question is POSTed to /assistant/stream with the conversation so far, and the
// server-sent events that come back (passages, pieces of the answer, done) are written as they arrive.
// Without JavaScript the form asks /assistant?q= and the server writes the whole answer at once.
(function () {
  "use strict";
  var form = document.getElementById("ask");
  if (!form || !window.fetch || !window.TextDecoder) return;
  var input = form.elements.q;
  var result = document.getElementById("result");
  var answer = document.getElementById("answer");
  var sources = document.getElementById("sources");
  var error = document.getElementById("error");
  var asked = document.getElementById("asked");
  var conversation = document.getElementById("conversation");
  var restart = document.getElementById("restart");
  var turns = [];  // earlier turns: {q, a}
  var current = null;  // the AbortController of the question being answered
  var last = null;  // the question on the page: {question, state}, moved up when the next one is asked
  var turn = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  // [n] in the answer becomes a link to source n; everything else stays plain text.
  function renderAnswer(target, text, count, prefix) {
    target.textContent = "";
    var re = /\[(\d+)\]/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      var n = parseInt(m[1], 10);
      if (n < 1 || n > count) continue;
      target.appendChild(document.createTextNode(text.slice(last, m.index)));
      target.appendChild(el("a", { href: "#" + prefix + n, "class": "cite" }, "[" + n + "]"));
      last = re.lastIndex;
    }
    target.appendChild(document.createTextNode(text.slice(last)));
  }

  function showSources(target, list, prefix) {
    target.textContent = "";
    if (!list.length) target.appendChild(el("li", { "class": "none" }, "Nothing in the library matches this question."));
    list.forEach(function (p) {
      var li = el("li", { id: prefix + p.n });
      li.appendChild(el("a", { href: p.url }, p.title));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("small", { "class": "book" }, p.book));
      li.appendChild(el("p", {}, p.text));
      target.appendChild(li);
    });
  }

  // The finished turn moves up into the conversation, its citations renumbered to its own sources.
  function archive(question, text, list) {
    turn += 1;
    var prefix = "turn" + turn + "-source-";
    var block = el("article", { "class": "turn" });
    block.appendChild(el("h2", { "class": "question" }, question));
    var a = el("div", { "class": "answer" });
    renderAnswer(a, text, list.length, prefix);
    block.appendChild(a);
    var details = el("details", {});
    details.appendChild(el("summary", {}, list.length + " source" + (list.length === 1 ? "" : "s")));
    var ol = el("ol", { "class": "sources" });
    showSources(ol, list, prefix);
    details.appendChild(ol);
    block.appendChild(details);
    conversation.appendChild(block);
  }

  function handle(name, data, state) {
    if (name === "passages") {
      state.list = data;
      showSources(sources, data, "source-");
    } else if (name === "delta") {
      state.text += data.text;
      renderAnswer(answer, state.text, state.list.length, "source-");
    } else if (name === "done") {
      // The note matters only when a model was expected: the page already says when none runs.
      var expected = document.getElementById("modelstate").dataset.available === "yes";
      if (!data.answered && data.message && expected) {
        error.textContent = data.message;
        error.className = "note";
        error.hidden = false;
      }
      if (data.answered) state.answered = true;
    } else if (name === "error") {
      error.textContent = data.stage === "model" && state.list.length
        ? "The model could not answer (" + data.message + "); the sources below are what the library has."
        : data.message;
      error.hidden = false;
    }
  }

  function finish(question, state) {
    answer.classList.remove("writing");
    if (state.answered) turns.push({ q: question, a: state.text });
    restart.hidden = turns.length === 0;
    document.body.dataset.assistant = "done";
  }

  function ask(question) {
    if (current) current.abort();
    var controller = current = new AbortController();
    // The previous answer, if any, joins the conversation before the new one is written.
    if (last && last.state.answered) archive(last.question, last.state.text, last.state.list);
    var state = { list: [], text: "", answered: false };
    last = { question: question, state: state };
    result.hidden = false;
    error.hidden = true;
    error.className = "error";
    asked.textContent = question;
    asked.hidden = false;
    answer.textContent = "";
    answer.classList.add("writing");
    sources.textContent = "";
    document.body.dataset.assistant = "asking";
    fetch("/assistant/stream", {
      method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      body: JSON.stringify({ q: question, history: turns.slice() })
    }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (body) { throw new Error(body.message || response.statusText); },
                                    function () { throw new Error(response.statusText); });
      }
      var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer += decoder.decode(chunk.value, { stream: true });
          var parts = buffer.split("\n\n");
          buffer = parts.pop();
          parts.forEach(function (part) {
            var name = "message", data = "";
            part.split("\n").forEach(function (line) {
              if (line.indexOf("event: ") === 0) name = line.slice(7);
              else if (line.indexOf("data: ") === 0) data += line.slice(6);
            });
            if (data) handle(name, JSON.parse(data), state);
          });
          return pump();
        });
      }
      return pump();
    }).then(function () {
      if (current === controller) finish(question, state);
    }, function (e) {
      if (e.name === "AbortError") return;
      error.textContent = e.message || "The connection to the box was lost.";
      error.hidden = false;
      finish(question, state);
    });
  }

  form.addEventListener("submit", function (e) {
    var question = input.value.trim();
    if (!question) return;
    e.preventDefault();
    window.history.replaceState(null, "", "/assistant?q=" + encodeURIComponent(question));
    input.value = "";
    input.placeholder = "Ask a follow-up question";
    ask(question);
  });
  restart.addEventListener("click", function () {
    if (current) current.abort();
    turns = [];
    last = null;
    conversation.textContent = "";
    result.hidden = true;
    restart.hidden = true;
    input.placeholder = "Ask a question about anything in the library";
    window.history.replaceState(null, "", "/assistant");
    input.focus();
  });
  document.body.dataset.assistant = "ready";
})();
