// Almanac map viewer: MapLibre GL JS on the box's own styles and tiles, place search, articles on the map.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("maps-config").textContent);
  var params = new URLSearchParams(location.search);
  var dark = params.get("flavor") ? params.get("flavor") === "dark"
    : window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches;
  var choice = params.get("map") || (cfg.choices[0] ? cfg.choices[0].id : "");
  var hidden = {};

  function styleUrl() {
    return "/maps/style.json?flavor=" + (dark ? "dark" : "light") + (choice ? "&map=" + encodeURIComponent(choice) : "");
  }
  function num(key, fallback) {
    var v = parseFloat(params.get(key));
    return isFinite(v) ? v : fallback;
  }

  var map = new maplibregl.Map({
    container: "map",
    style: styleUrl(),
    center: [num("lon", 10), num("lat", 30)],
    zoom: num("z", params.has("lat") ? 12 : 1.5),
    maxZoom: 19,
    hash: !params.has("lat"),
    attributionControl: { compact: true, customAttribution: "GeoNames (CC-BY 4.0)" }
  });
  window.almanacMap = map;
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");
  map.on("idle", function () { window.almanacMapIdle = true; });
  if (params.has("lat")) {
    new maplibregl.Marker().setLngLat([num("lon", 0), num("lat", 0)]).addTo(map);
  }

  // -- layer switcher --------------------------------------------------------------------------
  function applyGroups() {
    (map.getStyle().layers || []).forEach(function (layer) {
      var group = layer.metadata && layer.metadata["almanac:group"];
      if (group && group in hidden) {
        map.setLayoutProperty(layer.id, "visibility", hidden[group] ? "none" : "visible");
      }
    });
  }
  document.querySelectorAll("[data-group]").forEach(function (box) {
    box.addEventListener("change", function () { hidden[box.dataset.group] = !box.checked; applyGroups(); });
  });
  var darkBox = document.getElementById("maps-dark");
  darkBox.checked = dark;
  darkBox.addEventListener("change", function () { dark = darkBox.checked; map.setStyle(styleUrl()); });
  var select = document.getElementById("maps-choice");
  if (select) {
    select.value = choice;
    select.addEventListener("change", function () { choice = select.value; map.setStyle(styleUrl()); });
  }

  // -- articles on the map -----------------------------------------------------------------------
  var articlesBox = document.getElementById("maps-articles");
  var articles = { type: "FeatureCollection", features: [] };
  function addArticleLayer() {
    if (map.getSource("articles")) return;
    map.addSource("articles", { type: "geojson", data: articles });
    map.addLayer({ id: "articles", type: "circle", source: "articles",
      layout: { visibility: articlesBox.checked ? "visible" : "none" },
      paint: { "circle-radius": 6, "circle-color": "#c0392b", "circle-stroke-color": "#fff", "circle-stroke-width": 1.5 } });
  }
  function loadArticles() {
    if (!articlesBox.checked || map.getZoom() < 4) return;
    var c = map.getCenter(), b = map.getBounds();
    var radius = Math.min(500, c.distanceTo(b.getNorthEast()) / 1000);
    fetch("/maps/nearby?lat=" + c.lat.toFixed(5) + "&lon=" + c.lng.toFixed(5) + "&radius_km=" + radius.toFixed(1) + "&limit=300")
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (rows) {
        articles = { type: "FeatureCollection", features: rows.map(function (a) {
          return { type: "Feature", geometry: { type: "Point", coordinates: [a.lon, a.lat] },
                   properties: { title: a.title, url: "/content/" + encodeURIComponent(a.book) + "/" + a.path } };
        }) };
        if (map.getSource("articles")) map.getSource("articles").setData(articles);
      }).catch(function () {});
  }
  articlesBox.addEventListener("change", function () {
    if (map.getLayer("articles")) map.setLayoutProperty("articles", "visibility", articlesBox.checked ? "visible" : "none");
    loadArticles();
  });
  map.on("style.load", function () { addArticleLayer(); applyGroups(); });
  map.on("moveend", loadArticles);
  map.once("load", loadArticles);
  map.on("click", "articles", function (e) {
    var p = e.features[0].properties;
    var a = document.createElement("a");
    a.href = p.url; a.textContent = p.title;
    new maplibregl.Popup().setLngLat(e.lngLat).setDOMContent(a).addTo(map);
    e.preventDefault();
  });
  map.on("mouseenter", "articles", function () { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", "articles", function () { map.getCanvas().style.cursor = ""; });

  // -- what is here ------------------------------------------------------------------------------
  map.on("click", function (e) {
    if (e.defaultPrevented || !cfg.gazetteer) return;
    fetch("/maps/nearest?lat=" + e.lngLat.lat.toFixed(5) + "&lon=" + e.lngLat.lng.toFixed(5))
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (rows) {
        if (!rows.length) return;
        var p = rows[0], box = document.createElement("div");
        box.className = "maps-popup";
        var b = document.createElement("strong");
        b.textContent = p.name + ", " + p.country;
        box.appendChild(b);
        box.appendChild(document.createTextNode(" · " + p.distance_km.toFixed(1) + " km away"));
        new maplibregl.Popup().setLngLat(e.lngLat).setDOMContent(box).addTo(map);
      }).catch(function () {});
  });

  // -- place search --------------------------------------------------------------------------------
  var q = document.getElementById("maps-q"), list = document.getElementById("maps-results");
  var timer = null, marker = null;
  function show(rows) {
    list.textContent = "";
    rows.forEach(function (p) {
      var li = document.createElement("li"), btn = document.createElement("button"), small = document.createElement("small");
      btn.type = "button";
      btn.textContent = p.name + " ";
      small.textContent = p.country + (p.population ? " · " + p.population.toLocaleString() : "");
      btn.appendChild(small);
      btn.addEventListener("click", function () { go(p); });
      li.appendChild(btn);
      list.appendChild(li);
    });
  }
  function go(p) {
    list.textContent = "";
    q.value = p.name;
    if (marker) marker.remove();
    marker = new maplibregl.Marker().setLngLat([p.lon, p.lat]).addTo(map);
    map.flyTo({ center: [p.lon, p.lat], zoom: p.population > 1000000 ? 9 : p.population > 100000 ? 11 : 12 });
  }
  function lookup() {
    var text = q.value.trim();
    if (!text) { show([]); return; }
    fetch("/maps/search?q=" + encodeURIComponent(text) + "&limit=8")
      .then(function (r) { return r.ok ? r.json() : []; }).then(show).catch(function () {});
  }
  q.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(lookup, 150); });
  document.getElementById("maps-search").addEventListener("submit", function (e) {
    e.preventDefault();
    fetch("/maps/search?q=" + encodeURIComponent(q.value.trim()) + "&limit=1")
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (rows) { if (rows.length) go(rows[0]); }).catch(function () {});
  });
})();
