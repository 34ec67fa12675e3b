// The admin console: confirmations, the jobs page's live progress (it polls its own JSON twin), and the
// Maps page's region box and size estimate. Forms work without it; this only makes them nicer.
(function () {
  "use strict";
  var token = (document.querySelector("meta[name='csrf-token']") || {}).content || "";

  document.addEventListener("submit", function (e) {
    var message = e.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) e.preventDefault();
  });

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function bytes(n) {
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return i ? n.toFixed(1) + " " + units[i] : Math.round(n) + " B";
  }
  function post(action, label, verb) {
    var f = el("form", { method: "post", action: action, "class": "inline" });
    f.appendChild(el("input", { type: "hidden", name: "csrf_token", value: token }));
    var b = el("button", { type: "submit" }, label);
    if (verb) b.setAttribute("data-verb", verb);
    f.appendChild(b);
    return f;
  }

  // -- downloads and tasks, live ------------------------------------------------------------------------
  var ACTIONS = { pause: ["queued", "running"], resume: ["paused", "failed"], cancel: ["queued", "running", "paused", "failed"] };
  function jobItem(j) {
    var li = el("li", { "class": "job", id: "job-" + j.id, "data-state": j.state });
    li.appendChild(el("b", {}, j.name));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("small", {}, j.kind + " · job " + j.id));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", { "class": "state" }, j.state));
    var bar = el("progress", { max: "1" });
    if (j.fraction !== null) bar.value = j.fraction;
    li.appendChild(bar);
    var fig = bytes(j.bytes_done) + (j.size ? " of " + bytes(j.size) : "");
    if (j.state === "running" && j.rate) fig += " · " + bytes(j.rate) + "/s";
    if (j.eta_s !== null) fig += " · ETA " + Math.round(j.eta_s) + " s";
    li.appendChild(el("small", { "class": "figures" }, fig));
    if (j.error) li.appendChild(el("p", { "class": "error" }, j.error));
    Object.keys(ACTIONS).forEach(function (verb) {
      if (ACTIONS[verb].indexOf(j.state) >= 0) {
        li.appendChild(document.createTextNode(" "));
        li.appendChild(post("/admin/jobs/" + j.id + "/" + verb, verb.charAt(0).toUpperCase() + verb.slice(1), verb));
      }
    });
    return li;
  }
  function taskItem(t) {
    var li = el("li", { "class": "task", id: "task-" + t.id, "data-state": t.state });
    var a = el("a", { href: "/admin/tasks/" + t.id });
    a.appendChild(el("b", {}, t.label));
    li.appendChild(a);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", { "class": "state" }, t.state));
    li.appendChild(el("small", {}, " " + Math.round(t.elapsed_s) + " s" + (t.message ? " · " + t.message : "")));
    if (t.tail.length) li.appendChild(el("pre", { "class": "tail" }, t.tail.slice(-3).join("\n")));
    if (t.state === "running") li.appendChild(post("/admin/tasks/" + t.id + "/stop", "Stop"));
    return li;
  }
  function fill(list, items, make, none) {
    var focused = document.activeElement && list.contains(document.activeElement);
    if (focused) return; // do not pull a button from under a finger or the keyboard
    list.textContent = "";
    if (!items.length) list.appendChild(el("li", { "class": "none" }, none));
    items.forEach(function (x) { list.appendChild(make(x)); });
  }
  var jobs = document.getElementById("jobs");
  if (jobs && jobs.getAttribute("data-poll")) {
    var tasks = document.getElementById("tasks");
    var poll = function () {
      fetch(jobs.getAttribute("data-poll"), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data) {
            fill(jobs, data.jobs, jobItem, "No download jobs.");
            fill(tasks, data.tasks, taskItem, "No tasks.");
            document.body.setAttribute("data-polled", String(Number(document.body.getAttribute("data-polled") || 0) + 1));
          }
        }, function () {})
        .then(function () { setTimeout(poll, 1000); });
    };
    setTimeout(poll, 1000);
  }

  // -- a map region: the box drawn or taken from the view, and its size first ---------------------------------
  var region = document.getElementById("region");
  if (!region) return;
  var bboxInput = document.getElementById("region-bbox"), country = document.getElementById("region-country");
  var size = document.getElementById("region-size");
  document.getElementById("region-estimate").addEventListener("click", function () {
    var q = new URLSearchParams({ format: "json", maxzoom: document.getElementById("region-maxzoom").value,
                                  source: document.getElementById("region-source").value });
    if (country.value) q.set("country", country.value); else q.set("bbox", bboxInput.value);
    size.textContent = "Estimating…";
    fetch("/admin/maps/estimate?" + q.toString(), { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (b) { if (!r.ok) throw new Error(b.message); return b; }); })
      .then(function (b) { size.textContent = b.name + ": " + b.tiles + " tiles, " + bytes(b.bytes_needed) + " to fetch."; },
            function (e) { size.textContent = e.message; });
  });
  country.addEventListener("change", function () { if (country.value) bboxInput.value = ""; });
  bboxInput.addEventListener("input", function () { if (bboxInput.value) country.value = ""; });
  if (!window.maplibregl || !document.getElementById("region-map")) return;
  var map = new maplibregl.Map({ container: "region-map", style: "/maps/style.json", center: [10, 30], zoom: 1 });
  window.almanacRegionMap = map;
  function setBox(w, s, e, n) {
    var box = [Math.max(-180, Math.min(w, e)), Math.max(-85, Math.min(s, n)),
               Math.min(180, Math.max(w, e)), Math.min(85, Math.max(s, n))];
    bboxInput.value = box.map(function (v) { return v.toFixed(3); }).join(",");
    country.value = "";
    var ring = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]], [box[0], box[1]]];
    var data = { type: "Feature", geometry: { type: "Polygon", coordinates: [ring] }, properties: {} };
    if (map.getSource("region-box")) map.getSource("region-box").setData(data);
    else {
      map.addSource("region-box", { type: "geojson", data: data });
      map.addLayer({ id: "region-box-fill", type: "fill", source: "region-box", paint: { "fill-color": "#d33", "fill-opacity": 0.15 } });
      map.addLayer({ id: "region-box-line", type: "line", source: "region-box", paint: { "line-color": "#d33", "line-width": 2 } });
    }
  }
  document.getElementById("view-box").addEventListener("click", function () {
    var b = map.getBounds();
    setBox(b.getWest(), b.getSouth(), b.getEast(), b.getNorth());
  });
  var drawing = false, start = null, drawButton = document.getElementById("draw-box");
  drawButton.addEventListener("click", function () {
    drawing = !drawing;
    drawButton.textContent = drawing ? "Drag across the map…" : "Draw a box";
    if (drawing) map.dragPan.disable(); else map.dragPan.enable();
  });
  var canvas = map.getCanvasContainer();
  function point(e) {
    var r = canvas.getBoundingClientRect(), p = e.touches ? e.touches[0] || e.changedTouches[0] : e;
    return map.unproject([p.clientX - r.left, p.clientY - r.top]);
  }
  function down(e) { if (!drawing) return; start = point(e); e.preventDefault(); }
  function move(e) { if (!drawing || !start) return; var p = point(e); setBox(start.lng, start.lat, p.lng, p.lat); e.preventDefault(); }
  function up(e) {
    if (!drawing || !start) return;
    var p = point(e); setBox(start.lng, start.lat, p.lng, p.lat);
    start = null; drawing = false; drawButton.textContent = "Draw a box"; map.dragPan.enable();
  }
  canvas.addEventListener("mousedown", down); canvas.addEventListener("touchstart", down, { passive: false });
  canvas.addEventListener("mousemove", move); canvas.addEventListener("touchmove", move, { passive: false });
  window.addEventListener("mouseup", up); window.addEventListener("touchend", up);
})();
