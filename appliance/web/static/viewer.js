// Reader toolbar: keeps the URL hash (#book/path) in step with the iframe, and adds autocomplete,
// random, contents and dark mode without touching the article's own layout. It talks to the article only
// through postMessage (article_bridge.js inside the article).
(function () {
  "use strict";
  const frame = document.getElementById("page");
  const input = document.getElementById("find-input");
  const list = document.getElementById("suggestions");
  const toc = document.getElementById("toc");
  const tocToggle = document.getElementById("toc-toggle");
  const darkButton = document.getElementById("dark");
  let book = "";

  function target() {
    const hash = decodeURIComponent(location.hash.slice(1));
    const slash = hash.indexOf("/");
    return slash < 0 ? [hash, ""] : [hash.slice(0, slash), hash.slice(slash + 1)];
  }

  function contentUrl(b, path) {
    return "/content/" + encodeURIComponent(b) + "/" + path.split("/").map(encodeURIComponent).join("/");
  }

  // The article is sandboxed in an opaque origin (no allow-same-origin): the toolbar cannot read it, and
  // learns its address, title and headings from article_bridge.js by postMessage. Messages are taken only from
  // this frame's window at the opaque origin, and only as text to show.
  let shown = "";  // the decoded path of the article the frame last reported, "/content/book/path"

  function open() {
    const [b, path] = target();
    if (!b) { location.replace("/library"); return; }
    setBook(b);
    if (shown !== "/content/" + b + "/" + path) frame.contentWindow.location.replace(contentUrl(b, path));
  }

  function setBook(b) {
    book = b;
    document.getElementById("find-book").value = b;
    document.getElementById("home").href = "/book/" + encodeURIComponent(b);
    document.getElementById("random").href = "/viewer#" + encodeURIComponent(b) + "/";
  }

  function tell(msg) {
    msg.almanac = 1;
    frame.contentWindow.postMessage(msg, "*");  // an opaque origin cannot be named; nothing here is secret
  }

  window.addEventListener("message", function (e) {
    if (e.source !== frame.contentWindow || e.origin !== "null") return;
    const msg = e.data;
    if (!msg || msg.almanac !== 1) return;
    if (msg.type === "ready") {
      tell({ type: "dark", on: darkOn() });
    } else if (msg.type === "page" && typeof msg.path === "string") {
      shownPage(msg);
    }
  });

  function shownPage(msg) {
    const prefix = "/content/";
    let path;
    try { path = decodeURIComponent(msg.path); } catch (err) { return; }
    // A browser's own location has no dot segments: a message with some is not the bridge's.
    if (!path.startsWith(prefix) || path.split("/").some(function (s) { return s === ".." || s === "."; })) return;
    shown = path;
    const rest = path.slice(prefix.length);
    const slash = rest.indexOf("/");
    const b = slash < 0 ? rest : rest.slice(0, slash);
    const p = slash < 0 ? "" : rest.slice(slash + 1);
    setBook(b);
    history.replaceState(null, "", "#" + b + "/" + p);
    document.title = String(msg.title || "").slice(0, 300) || book;
    buildToc(Array.isArray(msg.headings) ? msg.headings.slice(0, 1000) : []);
    showOnMap();
  }

  // "View on map" for articles whose page carries coordinates (found when the book was indexed).
  const onMap = document.getElementById("onmap");
  function showOnMap() {
    onMap.hidden = true;
    const [b, path] = target();
    fetch("/maps/article?book=" + encodeURIComponent(b) + "&path=" + encodeURIComponent(path))
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (place) {
        if (place && place.url) { onMap.href = place.url; onMap.hidden = false; }
      })
      .catch(function () { /* no map here: the button stays hidden */ });
  }

  window.addEventListener("hashchange", open);

  document.getElementById("random").addEventListener("click", function (e) {
    e.preventDefault();
    // Setting href is one of the two things a parent may do to a cross-origin frame's location.
    frame.contentWindow.location.href = "/random?content=" + encodeURIComponent(book);
  });

  // Contents: the article's headings as the frame reported them; a click asks it to scroll to one.
  function buildToc(heads) {
    toc.textContent = "";
    heads.forEach(function (h, i) {
      const li = document.createElement("li");
      li.className = h && h.level === 3 ? "l3" : "l2";
      const a = document.createElement("a");
      a.href = "#";
      a.textContent = String((h && h.text) || "").slice(0, 300);
      a.addEventListener("click", function (e) {
        e.preventDefault();
        tell({ type: "scroll", index: i });
        toc.hidden = true;
        tocToggle.setAttribute("aria-expanded", "false");
      });
      li.appendChild(a);
      toc.appendChild(li);
    });
    tocToggle.disabled = heads.length === 0;
  }
  tocToggle.addEventListener("click", function () {
    toc.hidden = !toc.hidden;
    tocToggle.setAttribute("aria-expanded", String(!toc.hidden));
  });

  // Dark mode: the toolbar's colours here, the article's inverted by the bridge (most ZIM pages have no dark
  // theme); the choice is kept in this origin's localStorage.
  function darkOn() { return localStorage.getItem("almanac-dark") === "1"; }
  function applyDark() {
    const on = darkOn();
    document.documentElement.classList.toggle("dark", on);
    darkButton.setAttribute("aria-pressed", String(on));
    return on;
  }
  darkButton.addEventListener("click", function () {
    localStorage.setItem("almanac-dark", darkOn() ? "0" : "1");
    tell({ type: "dark", on: applyDark() });
  });

  // Autocomplete from /suggest (Kiwix's JSON).
  let timer = null, active = -1, items = [];
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(fetchSuggestions, 120);
  });
  function fetchSuggestions() {
    const term = input.value.trim();
    if (!term) { hide(); return; }
    fetch("/suggest?content=" + encodeURIComponent(book) + "&term=" + encodeURIComponent(term) + "&count=8")
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(show)
      .catch(hide);
  }
  function show(rows) {
    items = rows;
    active = -1;
    list.textContent = "";
    rows.forEach(function (row, i) {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.innerHTML = row.label;  // the server escapes titles and adds only <b>
      li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(i); });
      list.appendChild(li);
    });
    list.hidden = rows.length === 0;
  }
  function hide() { list.hidden = true; items = []; }
  function choose(i) {
    const row = items[i];
    hide();
    if (row.kind === "path") {
      location.hash = book + "/" + row.path;
    } else {
      input.value = row.value.trim();
      document.getElementById("find").submit();
    }
  }
  input.addEventListener("keydown", function (e) {
    if (list.hidden) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      active = (active + (e.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      Array.from(list.children).forEach(function (li, i) { li.setAttribute("aria-selected", String(i === active)); });
    } else if (e.key === "Enter" && active >= 0) {
      e.preventDefault();
      choose(active);
    } else if (e.key === "Escape") {
      hide();
    }
  });
  input.addEventListener("blur", function () { setTimeout(hide, 150); });

  applyDark();
  open();
})();
