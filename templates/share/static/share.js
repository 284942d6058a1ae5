// The public trip page: draws the route and the runner on a Leaflet map (when Leaflet and the
// tiles are there) and keeps the same facts as text, updated from the share link's read-only
// WebSocket. No request leaves this origin except the map tiles.
(function () {
  "use strict";
  var body = document.body;
  var state = JSON.parse(document.getElementById("trip-state").textContent);
  // Every fix seen, from the page, the socket and re-reads of the route, by time: merging is
  // idempotent and order-free, so a fix the socket and a re-read both bring counts once.
  var fixes = [];
  var points = [];
  var last = null;
  var ended = false;

  function merge(list) {
    var byTime = {};
    fixes.concat(list).forEach(function (f) {
      if (!f || typeof f.latitude !== "number" || typeof f.longitude !== "number") { return; }
      var t = Date.parse(f.timestamp);
      if (isNaN(t)) { return; }
      byTime[t] = Object.assign(byTime[t] || {}, f, { t: t });
    });
    fixes = Object.keys(byTime).map(function (k) { return byTime[k]; })
      .sort(function (a, b) { return a.t - b.t; });
    points = fixes.map(function (f) { return [f.latitude, f.longitude]; });
    last = fixes.length ? fixes[fixes.length - 1] : null;
  }
  merge(state.waypoints);
  var map = null, line = null, marker = null;

  function text(id, value) { document.getElementById(id).textContent = value; }

  function clock(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return iso; }
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function haversineKm(a, b) {
    var rad = Math.PI / 180, dLat = (b[0] - a[0]) * rad, dLng = (b[1] - a[1]) * rad;
    var h = Math.pow(Math.sin(dLat / 2), 2) +
      Math.cos(a[0] * rad) * Math.cos(b[0] * rad) * Math.pow(Math.sin(dLng / 2), 2);
    return 2 * 6371 * Math.asin(Math.sqrt(h));
  }

  function routeKm() {
    var km = 0;
    for (var i = 1; i < points.length; i++) { km += haversineKm(points[i - 1], points[i]); }
    return km;
  }

  function where(fix) {
    return fix.latitude.toFixed(5) + ", " + fix.longitude.toFixed(5);
  }

  function showFacts() {
    if (last) {
      text("last-seen", where(last) + " at " + clock(last.timestamp));
      text("route-text", points.length + " GPS point" + (points.length === 1 ? "" : "s") +
        ", " + routeKm().toFixed(2) + " km");
    }
    if (last && typeof last.eta_minutes === "number") {
      text("eta", last.eta_minutes < 1 ? "Arriving now" :
        "About " + Math.round(last.eta_minutes) + " min" +
        (typeof last.distance_remaining_km === "number" ?
          " (" + last.distance_remaining_km.toFixed(1) + " km to go)" : ""));
    }
  }

  function showStatus(frame) {
    text("status", frame.text);
    if (frame.ended) {
      ended = true;
      document.getElementById("status").classList.add("ended");
      text("eta", "The trip has ended");
      text("connection", "The trip has ended; this page no longer updates.");
    }
  }

  function drawMap() {
    if (!map) { return; }
    line.setLatLngs(points);
    if (!last) { return; }
    var at = [last.latitude, last.longitude];
    var label = "Runner last seen at " + where(last) + " at " + clock(last.timestamp);
    if (!marker) {
      marker = L.marker(at, {
        icon: L.divIcon({ className: "runner-marker", iconSize: [22, 22] }),
        keyboard: false, title: label, alt: label
      }).addTo(map);
      map.setView(at, 15);
    } else {
      marker.setLatLng(at);
      if (!map.getBounds().pad(-0.1).contains(at)) { map.panTo(at); }
    }
    var el = marker.getElement();
    if (el) { el.setAttribute("aria-label", label); el.setAttribute("title", label); }
  }

  function startMap() {
    var el = document.getElementById("map");
    var note = document.getElementById("map-note");
    if (!body.dataset.tiles || typeof L === "undefined") {
      el.classList.add("no-map");
      note.hidden = false;
      note.textContent = "The map is not available; the position is given above.";
      return;
    }
    map = L.map(el, { zoomControl: true, attributionControl: true });
    var failed = 0;
    L.tileLayer(body.dataset.tiles, { maxZoom: 19, attribution: body.dataset.attribution })
      .on("tileerror", function () {
        failed += 1;
        if (failed === 1) {
          note.hidden = false;
          note.textContent = "Map tiles could not load; the route and position are still drawn and given above.";
        }
      }).addTo(map);
    line = L.polyline(points, { color: "#d9480f", weight: 4 }).addTo(map);
    if (points.length > 1) { map.fitBounds(line.getBounds(), { padding: [24, 24] }); }
    else { map.setView(points[0] || [3.139, 101.6869], 13); }
    drawMap();
  }

  function onFix(fix) {
    merge([fix]);
    showFacts();
    drawMap();
  }

  // Each time the socket opens the route is read again: fixes stored between the page's render
  // (or a lost connection) and the subscription are not missing.
  function reload() {
    return fetch(body.dataset.json, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (env) {
        if (!env || !env.data) { return; }
        merge((env.data.waypoints || []).map(function (w) {
          return { latitude: w.latitude, longitude: w.longitude, timestamp: w.recorded_at };
        }));
        showFacts();
        drawMap();
      }).catch(function () { /* the next frame or reconnect catches up */ });
  }

  var retry = 1000;
  function connect() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(proto + "//" + location.host + body.dataset.ws);
    ws.onopen = function () {
      retry = 1000;
      if (!ended) { text("connection", "Live: updates appear as the runner moves."); }
      reload();
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "location_update") { onFix(frame.data || frame); }
      else if (frame.type === "trip_status") { showStatus(frame); }
      else if (frame.type === "link_expired") {
        ended = true;
        text("status", frame.text);
        text("connection", "This link has expired; the page no longer updates.");
      }
    };
    ws.onclose = function (event) {
      if (ended || event.code === 1000) { return; }  // 1000: the trip ended or the link expired
      text("connection", "Connection lost; reconnecting…");
      // A link that expired while we were away is refused: say so instead of retrying.
      fetch(body.dataset.json, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { return r.json().catch(function () { return {}; }); })
        .then(function (env) {
          if (env && typeof env.error === "string" && env.error.indexOf("share link") === 0) {
            ended = true;
            text("status", "This trip link has expired.");
            text("connection", "This link has expired; the page no longer updates.");
            return;
          }
          setTimeout(connect, retry);
          retry = Math.min(retry * 2, 30000);
        }, function () {
          setTimeout(connect, retry);
          retry = Math.min(retry * 2, 30000);
        });
    };
  }

  var expires = document.getElementById("expires");
  var until = new Date(expires.getAttribute("datetime"));
  if (!isNaN(until.getTime())) {
    expires.textContent = until.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }
  showStatus(state);
  showFacts();
  startMap();
  connect();
}());
