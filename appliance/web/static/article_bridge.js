// Inside an archive's page in the reader's frame (the reader adds this one script to it): tells the toolbar
// the page's address, title and headings, and does what the toolbar asks (dark mode, scroll to a heading).
// The page is sandboxed in an opaque origin, so postMessage is the only way between the two: this side
// answers only its parent window at the portal's origin, and the toolbar takes what it says as text to show.
(function () {
  "use strict";
  if (window.parent === window) return;
  const toolbar = window.parent;
  // location keeps the URL's origin (the portal's) while the page's own origin is "null".
  const portal = location.protocol + "//" + location.host;

  function send(msg) {
    msg.almanac = 1;
    toolbar.postMessage(msg, portal);
  }

  function headings() {
    return Array.from(document.querySelectorAll("h2, h3"));
  }

  function setDark(on) {
    let style = document.getElementById("almanac-dark");
    if (on && !style) {
      // Most ZIM pages have no dark theme: invert the colours, and turn images back.
      style = document.createElement("style");
      style.id = "almanac-dark";
      style.textContent = "html{filter:invert(1) hue-rotate(180deg);background:#fff}" +
        "img,video,picture,svg,canvas{filter:invert(1) hue-rotate(180deg)}";
      (document.head || document.documentElement).appendChild(style);
    } else if (!on && style) {
      style.remove();
    }
  }

  window.addEventListener("message", function (e) {
    if (e.source !== toolbar || e.origin !== portal) return;
    const msg = e.data;
    if (!msg || msg.almanac !== 1) return;
    if (msg.type === "dark") {
      setDark(msg.on === true);
    } else if (msg.type === "scroll") {
      const h = headings()[msg.index];
      if (h) h.scrollIntoView();
    }
  });

  function describe() {
    send({
      type: "page",
      path: location.pathname,
      title: document.title,
      headings: headings().map(function (h) {
        return { level: h.tagName === "H3" ? 3 : 2, text: h.textContent.trim() };
      }),
    });
  }

  send({ type: "ready" });  // early, from the page's head: the toolbar answers with dark mode before it paints
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", describe);
  else describe();
})();
