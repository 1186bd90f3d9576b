// The live page: health, counts and open tracks from server-sent events; the view is MJPEG.
(function () {
  "use strict";
  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
  }
  function fill(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    body.textContent = "";
    rows.forEach(function (values) {
      var tr = document.createElement("tr");
      values.forEach(function (v) { cell(tr, v); });
      body.appendChild(tr);
    });
  }
  var labels = {frames: "frames processed", processed_fps: "processed fps", input_fps: "input fps",
    frames_in: "frames in", dropped: "dropped", reconnects: "reconnects", outages: "outages",
    connected: "connected", latency_ms: "latency (ms)", last_error: "last error"};
  var events = new EventSource("/live/events");
  events.onmessage = function (event) {
    var s = JSON.parse(event.data);
    if (s.source) document.getElementById("source").textContent = s.source;
    fill("health", Object.keys(s.health).map(function (k) { return [labels[k] || k, s.health[k]]; })
      .concat([["frame", s.frame], ["video time (s)", s.time_s], ["closed tracks", s.closed_tracks],
               ["counted tracks", s.counted_tracks]]));
    fill("live-counts", s.counts.map(function (c) { return [c.species, c.unique, c.max_n, c.max_n_time_s + " s"]; }));
    fill("open-tracks", s.open_tracks.map(function (t) {
      return ["#" + t.track_id, t.species, t.score === null ? "" : t.score.toFixed(2), t.origin];
    }));
    document.getElementById("ended").classList.toggle("hidden", !s.ended);
    if (s.ended) events.close();
  };
})();
