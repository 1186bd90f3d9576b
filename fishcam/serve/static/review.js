// The review page: post a correction, put back the fragments the server renders in answer.
(function () {
  "use strict";
  var root = document.getElementById("review");
  if (!root) return;
  var rel = root.dataset.rel;
  var queue = JSON.parse(root.dataset.queue || "[]");
  var reviewer = document.getElementById("reviewer");
  var message = document.getElementById("message");
  var cards = document.getElementById("cards");
  var unreviewed = document.getElementById("unreviewed");
  var sort = document.getElementById("sort");

  reviewer.value = localStorage.getItem("fishcam.reviewer") || "";
  reviewer.addEventListener("change", function () {
    localStorage.setItem("fishcam.reviewer", reviewer.value.trim());
  });
  unreviewed.checked = localStorage.getItem("fishcam.unreviewed") === "1";
  sort.value = localStorage.getItem("fishcam.sort") || "track";
  unreviewed.addEventListener("change", function () {
    localStorage.setItem("fishcam.unreviewed", unreviewed.checked ? "1" : "0");
    arrange();
  });
  sort.addEventListener("change", function () {
    localStorage.setItem("fishcam.sort", sort.value);
    arrange();
  });

  function say(text, bad) {
    message.textContent = text;
    message.className = bad ? "message bad" : "message";
  }

  function arrange() {
    var all = Array.prototype.slice.call(cards.querySelectorAll(".card"));
    var rank = {};
    queue.forEach(function (id, i) { rank[id] = i; });
    all.sort(function (a, b) {
      var x = Number(a.dataset.track), y = Number(b.dataset.track);
      if (sort.value === "queue") {
        var byRank = (rank[x] !== undefined ? rank[x] : 1e9) - (rank[y] !== undefined ? rank[y] : 1e9);
        if (byRank !== 0) return byRank;
      }
      return x - y;
    });
    all.forEach(function (card) {
      card.classList.toggle("hidden", unreviewed.checked && card.dataset.state !== "unreviewed");
      cards.appendChild(card);
    });
  }

  function apply(data) {
    document.getElementById("counts").innerHTML = data.counts_html;
    document.getElementById("reviewed").textContent = data.reviewed;
    document.getElementById("total").textContent = data.total;
    queue = data.queue || queue;
    Object.keys(data.cards).forEach(function (id) {
      var old = document.getElementById("track-" + id);
      var box = document.createElement("div");
      box.innerHTML = data.cards[id];
      var fresh = box.firstElementChild;
      if (old) old.replaceWith(fresh); else cards.appendChild(fresh);
    });
    Array.prototype.slice.call(cards.querySelectorAll(".card")).forEach(function (card) {
      if (!(card.dataset.track in data.cards)) card.remove();
    });
    arrange();
  }

  cards.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var card = button.closest(".card");
    var name = reviewer.value.trim();
    if (!name) { say("type your name as reviewer first", true); reviewer.focus(); return; }
    localStorage.setItem("fishcam.reviewer", name);
    var body = {action: button.dataset.action, track: Number(card.dataset.track), reviewer: name};
    if (body.action === "species") {
      var typed = card.querySelector("input[name=species_text]").value.trim();
      body.species = typed || card.querySelector("select[name=species]").value;
      if (!body.species) { say("choose or type a species", true); return; }
    } else if (body.action === "merge") {
      body.into = card.querySelector("input[name=into]").value;
      if (body.into === "") { say("give the track to merge into", true); return; }
      body.into = Number(body.into);
    } else if (body.action === "split") {
      body.frame = card.querySelector("input[name=frame]").value;
      if (body.frame === "") { say("give the frame to split at", true); return; }
      body.frame = Number(body.frame);
    }
    button.disabled = true;
    fetch("/api/correct/" + rel, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      credentials: "same-origin",
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) return response.text().then(function (text) { throw new Error(text); });
      return response.json();
    }).then(function (data) {
      apply(data);
      say("track " + body.track + ": " + body.action.replace("_", " ") + " saved", false);
    }).catch(function (error) {
      button.disabled = false;
      say(String(error.message || error).trim(), true);
    });
  });

  arrange();
})();
