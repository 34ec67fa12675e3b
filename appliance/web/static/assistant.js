// The assistant's page: each question is POSTed to /assistant/stream with the conversation so far, and the
// server-sent events that come back (conversation, passages, pieces of the answer, done) are written as they
// arrive. The conversation is saved on the box from the first question on (its id comes back first), so
// /assistant?c=ID resumes it. "Ask the deep model" queues the question as a waiting answer (POST /answers).
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
  var saved = document.getElementById("saved-conversation");
  var conversationId = null;  // the saved conversation this page writes into
  if (saved) {
    var c = JSON.parse(saved.textContent);
    conversationId = c.id;
    c.entries.forEach(function (e) { if (e.a) turns.push({ q: e.q, a: e.a }); });
  }
  var later = document.getElementById("later");
  var laterNote = document.getElementById("later-note");
  var nearest = document.getElementById("nearest");
  var nearestList = document.getElementById("nearest-list");
  var current = null;  // the AbortController of the question being answered
  var last = null;  // the question on the page: {question, state}, moved up when the next one is asked
  var turn = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  // [n] in the answer becomes a link to the section source n came from, the passage shown on hover; a number
  // that names no source is dropped; everything else stays plain text.
  function renderAnswer(target, text, list, prefix) {
    target.textContent = "";
    var re = /\[(\d+)\]/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      var n = parseInt(m[1], 10);
      target.appendChild(document.createTextNode(text.slice(last, m.index)));
      last = re.lastIndex;
      var p = list[n - 1];
      if (!p || p.n !== n) continue;
      target.appendChild(el("a", { href: p.url || "#" + prefix + n, "class": "cite", title: p.text,
                                   "data-source": prefix + n }, "[" + n + "]"));
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
    renderAnswer(a, text, list, prefix);
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
    if (name === "conversation") {
      conversationId = data.id;
      window.history.replaceState(null, "", "/assistant?c=" + encodeURIComponent(data.id));
    } else if (name === "passages") {
      state.list = data;
      showSources(sources, data, "source-");
    } else if (name === "delta") {
      state.text += data.text;
      renderAnswer(answer, state.text, state.list, "source-");
    } else if (name === "done") {
      // The note matters only when a model was expected: the page already says when none runs.
      var expected = document.getElementById("modelstate").dataset.available === "yes";
      if (data.declined) {
        error.textContent = data.message;
        error.className = "note";
        error.hidden = false;
        sources.textContent = "";
        nearestList.textContent = "";
        data.nearest.forEach(function (t) {
          var li = el("li", {});
          li.appendChild(el("a", { href: t.url }, t.title));
          li.appendChild(document.createTextNode(" "));
          li.appendChild(el("small", { "class": "book" }, t.book));
          nearestList.appendChild(li);
        });
        nearest.hidden = false;
      } else if (!data.answered && data.message && expected) {
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
    nearest.hidden = true;
    document.body.dataset.assistant = "asking";
    withToken().then(function (token) {
      return fetch("/assistant/stream", {
        method: "POST", signal: controller.signal,
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": token },
        body: JSON.stringify({ q: question, history: turns.slice(), conversation: conversationId || "new",
                               books: books() })
      });
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

  // Every change the page asks for carries this device's token (appliance/web/auth.py): the one the page
  // came with, or, for a device that has saved nothing yet (no cookie), one asked for first.
  var csrfMeta = document.querySelector("meta[name='csrf-token']");
  function withToken() {
    if (csrfMeta && csrfMeta.content) return Promise.resolve(csrfMeta.content);
    return fetch("/api/csrf", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (body) { if (csrfMeta) csrfMeta.content = body.csrf_token; return body.csrf_token; });
  }

  function books() {
    return Array.prototype.map.call(form.querySelectorAll("input[name='books.name']"), function (i) { return i.value; });
  }

  // The question (or, with an empty box, the one on the page) goes to the deep model as a waiting answer.
  function askLater() {
    var question = input.value.trim() || (last ? last.question : "");
    if (!question) { input.focus(); return; }
    document.body.dataset.later = "asking";
    withToken().then(function (token) {
      return fetch("/answers", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": token },
        body: JSON.stringify({ q: question, books: books(), conversation: conversationId })
      });
    }).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) throw new Error(body.message || r.statusText); return body; });
    }).then(function (body) {
      var j = body.job;
      laterNote.textContent = "";
      laterNote.appendChild(document.createTextNode("Asked the deep model: number " + j.position + " in line. "));
      laterNote.appendChild(el("a", { href: j.url }, "Your answer will be here"));
      laterNote.appendChild(document.createTextNode(", and in Answers, even if you close this page."));
      laterNote.className = "note";
      laterNote.hidden = false;
      input.value = "";
      document.body.dataset.later = "queued";
      document.dispatchEvent(new Event("almanac:waiting"));
    }, function (e) {
      laterNote.textContent = e.message;
      laterNote.className = "error";
      laterNote.hidden = false;
      document.body.dataset.later = "failed";
    });
  }

  if (later) later.addEventListener("click", function (e) { e.preventDefault(); askLater(); });

  form.addEventListener("submit", function (e) {
    var question = input.value.trim();
    if (!question) return;
    e.preventDefault();
    window.history.replaceState(null, "", conversationId ? "/assistant?c=" + encodeURIComponent(conversationId)
                                                         : "/assistant?q=" + encodeURIComponent(question));
    input.value = "";
    input.placeholder = "Ask a follow-up question";
    ask(question);
  });
  restart.addEventListener("click", function () {
    if (current) current.abort();
    turns = [];
    last = null;
    conversationId = null;
    conversation.textContent = "";
    result.hidden = true;
    restart.hidden = true;
    input.placeholder = "Ask a question about anything in the library";
    window.history.replaceState(null, "", "/assistant");
    input.focus();
  });
  if (saved) restart.hidden = false;
  document.body.dataset.assistant = "ready";
})();
