// Reader toolbar: keeps the URL hash (#book/path) in step with the iframe, and adds autocomplete,
// random, contents and dark mode without touching the article's own layout.
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

  function open() {
    const [b, path] = target();
    if (!b) { location.replace("/library"); return; }
    setBook(b);
    const url = contentUrl(b, path);
    if (frame.contentWindow.location.pathname !== url) frame.contentWindow.location.replace(url);
  }

  function setBook(b) {
    book = b;
    document.getElementById("find-book").value = b;
    document.getElementById("home").href = "/book/" + encodeURIComponent(b);
    document.getElementById("random").href = "/viewer#" + encodeURIComponent(b) + "/";
  }

  frame.addEventListener("load", function () {
    let doc;
    try { doc = frame.contentDocument; } catch (e) { return; }
    if (!doc || frame.contentWindow.location.href === "about:blank") return;
    const prefix = "/content/";
    const path = decodeURIComponent(frame.contentWindow.location.pathname);
    if (path.startsWith(prefix)) {
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf("/");
      const b = slash < 0 ? rest : rest.slice(0, slash);
      const p = slash < 0 ? "" : rest.slice(slash + 1);
      setBook(b);
      history.replaceState(null, "", "#" + b + "/" + p);
    }
    document.title = doc.title || book;
    applyDark(doc);
    buildToc(doc);
    showOnMap();
  });

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
    frame.contentWindow.location.assign("/random?content=" + encodeURIComponent(book));
  });

  // Contents: the article's headings, read from the (same-origin) iframe.
  function buildToc(doc) {
    toc.textContent = "";
    const heads = doc.querySelectorAll("h2, h3");
    heads.forEach(function (h, i) {
      if (!h.id) h.id = "almanac-h" + i;
      const li = document.createElement("li");
      li.className = h.tagName === "H3" ? "l3" : "l2";
      const a = document.createElement("a");
      a.href = "#";
      a.textContent = h.textContent.trim();
      a.addEventListener("click", function (e) {
        e.preventDefault();
        h.scrollIntoView();
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

  // Dark mode: inverts the article's colours (images turned back), since most ZIM pages have no dark theme.
  function applyDark(doc) {
    const on = localStorage.getItem("almanac-dark") === "1";
    document.documentElement.classList.toggle("dark", on);
    darkButton.setAttribute("aria-pressed", String(on));
    if (!doc || !doc.documentElement) return;
    let style = doc.getElementById("almanac-dark");
    if (on && !style) {
      style = doc.createElement("style");
      style.id = "almanac-dark";
      style.textContent = "html{filter:invert(1) hue-rotate(180deg);background:#fff}" +
        "img,video,picture,svg,canvas{filter:invert(1) hue-rotate(180deg)}";
      (doc.head || doc.documentElement).appendChild(style);
    } else if (!on && style) {
      style.remove();
    }
  }
  darkButton.addEventListener("click", function () {
    localStorage.setItem("almanac-dark", localStorage.getItem("almanac-dark") === "1" ? "0" : "1");
    let doc = null;
    try { doc = frame.contentDocument; } catch (e) { /* not our page */ }
    applyDark(doc);
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

  applyDark(null);
  open();
})();
