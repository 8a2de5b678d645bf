/* charforge's inspection report: draws the text from the page's JSON block, coloured by surprisal
   or by a chosen unit, and shows, for the character under the pointer (or the one pinned by a
   click, or by #pos=N in the address; #pos=N&view=U colours by the U-th unit too), its bits, the
   model's top predictions and the units' values.
   Characters are only ever set as textContent, never parsed as markup: the text is untrusted. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("charforge-data").textContent);
  var chars = Array.from(data.text);  // code points, as the positions count them
  var box = document.getElementById("text");
  var panel = document.getElementById("panel");
  var select = document.getElementById("view");
  var legend = document.getElementById("legend");
  var spans = [];
  var odd = [];  // whether each character is drawn as a code (controls, formatting, unassigned)
  var pinned = -1;
  var view = -1;  // -1: surprisal; else an index into data.units
  var invisible = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]$/u;

  function code(ch) {
    return "U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  }

  function glyph(ch) {  // how a character is drawn in the text
    if (ch === "\n") return "\u21b5";
    return ch === "\t" || !invisible.test(ch) ? ch : "\u27e8" + code(ch) + "\u27e9";
  }

  function named(ch) {  // how a character is named in the panel
    if (ch === "\n") return "line break";
    if (ch === "\t") return "tab";
    if (ch === " ") return "space";
    return invisible.test(ch) ? code(ch) : ch;
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function draw() {
    var frag = document.createDocumentFragment();
    chars.forEach(function (ch, i) {
      var shown = glyph(ch);
      var span = el("span", shown);
      span.dataset.pos = i;
      odd.push(shown !== ch);
      spans.push(span);
      frag.appendChild(span);
      if (ch === "\n") frag.appendChild(document.createTextNode("\n"));
    });
    if (!chars.length) frag.appendChild(el("em", "(the text is empty)"));
    box.appendChild(frag);
  }

  function surprisalBin(bits) {
    var b = 0;
    while (b < data.edges.length && bits >= data.edges[b]) b++;
    return "s" + b;
  }

  function unitBin(unit, value) {
    var x = (value - unit.low) / (unit.high - unit.low);
    return "u" + Math.min(8, Math.max(0, Math.floor(x * 9)));
  }

  function colour() {
    var unit = data.units[view];
    spans.forEach(function (span, i) {
      var cls = unit ? unitBin(unit, unit.values[i]) : surprisalBin(data.bits[i]);
      span.className = cls + (odd[i] ? " ctl" : "") + (i === pinned ? " pin" : "");
    });
    legend.textContent = "";
    if (unit) {
      for (var b = 0; b < 9; b++) {
        var value = unit.low + (unit.high - unit.low) * (b + 0.5) / 9;
        legend.appendChild(el("span", value.toFixed(2), "u" + b));
      }
    } else {
      var edges = data.edges;
      legend.appendChild(el("span", "< " + edges[0] + " bits", "s0"));
      for (var e = 1; e < edges.length; e++) legend.appendChild(el("span", edges[e - 1] + "\u2013" + edges[e], "s" + e));
      legend.appendChild(el("span", "\u2265 " + edges[edges.length - 1] + " bits", "s" + edges.length));
    }
  }

  function row(table, cells, cls) {
    var tr = el("tr", undefined, cls);
    cells.forEach(function (cell) { tr.appendChild(cell); });
    table.appendChild(tr);
  }

  function show(i) {
    panel.textContent = "";
    if (i < 0) { panel.hidden = true; return; }
    panel.hidden = false;
    panel.appendChild(el("h3", "position " + i + ": " + named(chars[i])));
    panel.appendChild(el("div", data.bits[i].toFixed(3) + " bits" + (i === pinned ? " \u00b7 pinned" : "")));
    panel.appendChild(el("h4", "the model expected"));
    var table = el("table");
    data.top[i].forEach(function (id, r) {
      var p = data.probs[i][r];
      var bar = el("td");
      var fill = el("div", undefined, "bar");
      fill.style.width = Math.max(1, Math.round(p * 100)) + "%";
      bar.appendChild(fill);
      row(table, [el("td", named(data.chars[id]), "ch"), el("td", (p * 100).toFixed(1) + "%", "num"), bar],
          data.chars[id] === chars[i] ? "hit" : "");
    });
    panel.appendChild(table);
    if (data.units.length) {
      panel.appendChild(el("h4", "units"));
      var units = el("table");
      data.units.forEach(function (unit, u) {
        row(units, [el("td", unit.label), el("td", unit.values[i].toFixed(3), "num")], u === view ? "selected" : "");
      });
      panel.appendChild(units);
    }
  }

  function pin(i) {
    if (pinned >= 0) spans[pinned].classList.remove("pin");
    pinned = i;
    if (i >= 0) spans[i].classList.add("pin");
    show(i);
  }

  function position(node) {
    return node.dataset && node.dataset.pos !== undefined ? Number(node.dataset.pos) : -1;
  }

  function fromAddress() {
    var match = /^#pos=(\d+)(?:&view=(\d+))?$/.exec(window.location.hash);
    if (match && match[2] !== undefined && Number(match[2]) < data.units.length) {
      view = Number(match[2]);
      select.value = match[2];
      colour();
    }
    var i = match ? Number(match[1]) : -1;
    if (i >= 0 && i < chars.length) {
      pin(i);
      spans[i].scrollIntoView({block: "nearest"});
    }
  }

  function listSpans() {
    var list = document.getElementById("spans");
    data.spans.forEach(function (s) {
      var item = el("li");
      var link = el("a", "\u201c" + chars.slice(s[0], s[1]).map(glyph).join("") + "\u201d");
      link.href = "#pos=" + s[0];
      item.appendChild(link);
      item.appendChild(document.createTextNode(" " + s[2].toFixed(2) + " bits per character, at " + s[0]));
      list.appendChild(item);
    });
  }

  select.appendChild(el("option", "surprisal (bits)")).value = "-1";
  data.units.forEach(function (unit, u) { select.appendChild(el("option", unit.label)).value = String(u); });
  select.addEventListener("change", function () { view = Number(select.value); colour(); show(pinned); });
  box.addEventListener("mouseover", function (e) { var i = position(e.target); if (i >= 0 && pinned < 0) show(i); });
  box.addEventListener("mouseleave", function () { if (pinned < 0) show(-1); });
  box.addEventListener("click", function (e) { var i = position(e.target); if (i >= 0) pin(i === pinned ? -1 : i); });
  document.addEventListener("keydown", function (e) {
    if (pinned < 0 || e.target === select) return;
    var to = e.key === "ArrowRight" ? pinned + 1 : e.key === "ArrowLeft" ? pinned - 1 : null;
    if (to !== null) {
      e.preventDefault();  // the pin moves, not the page
      if (to >= 0 && to < chars.length) {
        pin(to);
        spans[to].scrollIntoView({block: "nearest"});
      }
    } else if (e.key === "Escape") pin(-1);
  });
  window.addEventListener("hashchange", fromAddress);
  draw();
  colour();
  listSpans();
  fromAddress();
})();
