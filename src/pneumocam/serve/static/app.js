// pneumocam's pages: explain an uploaded film; browse a run's films as a worklist. Plain JavaScript, no library,
// no network beyond this server; the film viewer itself is viewer.js.
"use strict";
const pneumocam = (() => {
  const $ = (id) => document.getElementById(id);
  const fmt = (v, digits = 3) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? "n/a" : (100 * v).toFixed(1) + "%");
  const escape = (v) => String(v ?? "n/a").replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const { Viewer, regionFigure } = pneumocamViewer;

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function json(response) {
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
    return body;
  }

  function provenance(model) {
    const rows = [
      ["weights", model.weights], ["recipe", model.recipe || "none"], ["input", `${model.image_size} px, focus ${model.focus}`],
      ["data fingerprint", model.data_fingerprint], ["threshold", `${fmt(model.threshold)} (${model.threshold_source})`],
      ["calibration", model.calibration || "none"], ["domain-shift guard", model.guard ? "fitted" : "input checks only"],
    ];
    return rows.map(([k, v]) => `<div><b>${k}</b>: ${escape(v)}</div>`).join("");
  }

  // The map's colour scale and what it means, from the server (declared once there).
  async function colourScale() {
    const health = await json(await fetch("/api/health"));
    const scale = health.model.colour_scale;
    $("colour-scale").src = "data:image/png;base64," + scale.png_base64;
    $("colour-meaning").textContent = `Map colours: ${scale.meaning}.`;
    return health.model;
  }

  function bindOpacity(viewer) {
    const opacity = () => {
      const value = $("opacity").value / 100;
      if ($("opacity-value")) $("opacity-value").textContent = value.toFixed(2);
      viewer.setOpacity(value);
    };
    $("opacity").addEventListener("input", opacity);
    opacity();
  }

  const guardText = (inDistribution, reason) => (inDistribution
    ? "In distribution: the film looks like the training films."
    : `OUT OF DISTRIBUTION${reason ? ` (${reason})` : ""}: the probability is shown but is worth little here.`);

  function showVerdict(inDistribution, reason) {
    const verdict = $("verdict");
    verdict.className = "banner " + (inDistribution ? "green" : "amber");
    verdict.textContent = guardText(inDistribution, reason);
  }

  const stem = (path) => path.split(/[\\/]/).pop().replace(/\.[^.]*$/, "") || "film";

  const VARIANT_TEXT = {
    whole: "the film as it is",
    lungs_removed_fill: "lungs removed (grey)",
    only_lungs_fill: "only the lungs kept (grey around)",
    lungs_removed_blur: "lungs removed (blurred)",
    only_lungs_blur: "only the lungs kept (blurred around)",
  };

  function reliance(found) {
    $("reliance").hidden = !found;
    if (!found) return;
    $("reliance-table").innerHTML = Object.entries(found.probability).map(([name, p]) =>
      `<div>${VARIANT_TEXT[name] || escape(name)}: p(PNEUMONIA) <b>${fmt(p)}</b></div>`).join("");
    $("reliance-note").textContent = `Lungs ${found.lungs}; ${found.note}.`;
  }

  async function explainPage() {
    const viewer = new Viewer($("viewer"));
    const model = await colourScale();
    $("model-banner").innerHTML = model.random_init
      ? '<div class="banner red">This model started from RANDOM weights (no ImageNet pretraining).</div>' : "";
    for (const m of model.methods) {
      const option = document.createElement("option");
      option.value = m;
      option.textContent = `${m} (${(model.method_cost || {})[m] || "fast"})`;
      $("method").appendChild(option);
    }
    bindOpacity(viewer);
    $("show-contours").addEventListener("change", () => {
      viewer.showContours = $("show-contours").checked;
      viewer.draw();
    });
    let caption = null;
    $("export").addEventListener("click", () => caption && viewer.exportPng(caption.lines, caption.file));
    const send = async (file) => {
      showError("");
      $("busy").hidden = false;
      const form = new FormData();
      form.append("file", file);
      form.append("method", $("method").value);
      form.append("reliance", $("ask-reliance").checked ? "true" : "false");
      form.append("display", "true");
      try {
        const answer = await json(await fetch("/api/predict", { method: "POST", body: form }));
        $("result").hidden = false;  // shown first: the canvases take their size from the page
        await viewer.load({
          filmPng: answer.display.film_png_base64, window: answer.display.window,
          heatPng: answer.heatmap_png_base64, contoursPng: answer.contours_png_base64,
        });
        $("probability").textContent = fmt(answer.probability);
        $("threshold").textContent = fmt(answer.threshold);
        $("prediction").textContent = answer.prediction;
        showVerdict(answer.in_distribution, answer.ood_reason);
        const shares = answer.regions.shares, ratios = answer.regions.ratios;
        regionFigure($("regions-figure"), Object.keys(shares).map((r) => ({
          name: r, share: shares[r],
          area: shares[r] !== null && ratios[r] ? shares[r] / ratios[r] : null,  // ratio = share / area share
        })));
        $("regions").innerHTML = Object.keys(shares).map((r) =>
          `<div>${escape(r)}: ${pct(shares[r])} of the mass (ratio to its area ${fmt(ratios[r], 2)})</div>`).join("") +
          `<div><small>lungs: ${escape(answer.regions.lung_source)}</small></div>`;
        $("pointing").textContent = "Map maximum inside the lungs: " +
          (answer.regions.pointing_lungs === null ? "n/a" : answer.regions.pointing_lungs ? "yes" : "no");
        $("provenance").innerHTML = provenance(answer.model);
        reliance(answer.reliance);
        const m = answer.model;
        caption = {
          file: `${stem(file.name)}-pneumocam.png`,
          lines: [
            `${file.name}: p(PNEUMONIA) ${fmt(answer.probability)} at threshold ${fmt(answer.threshold)} -> ` +
              `${answer.prediction}`,
            `map: ${answer.method}; model: ${m.checkpoint}, weights ${m.weights}, recipe ${m.recipe || "none"}`,
            `guard: ${guardText(answer.in_distribution, answer.ood_reason)}`,
          ],
        };
      } catch (error) {
        showError(error.message);
      } finally {
        $("busy").hidden = true;
      }
    };
    $("file").addEventListener("change", () => { if ($("file").files.length) send($("file").files[0]); });
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]);
    });
  }

  // A run's films as a worklist: the table (sorted, filtered) is the list; next / previous step through what it
  // shows, so the filters hold while one reads film after film.
  async function runsPage() {
    const viewer = new Viewer($("viewer"));
    await colourScale().catch(() => {});  // the list works without the served model's scale
    bindOpacity(viewer);
    const columns = [
      ["path", "path"], ["label", "label"], ["probability", "probability"], ["prediction", "prediction"],
      ["correct", "correct?"], ["in_distribution", "in distribution"], ["lung_share", "lung share"],
      ["outside_body_share", "outside-body share"],
    ];
    let rows = [], wanted = [], current = null, sortKey = "path", ascending = true, caption = null, opening = 0;
    $("table").querySelector("thead tr").innerHTML = columns.map(([k, t]) => `<th data-key="${k}">${t}</th>`).join("");
    const render = () => {
      wanted = rows.filter((r) =>
        (!$("only-wrong").checked || !r.correct) && (!$("only-flagged").checked || !r.in_distribution) &&
        (!$("class-filter").value || r.label === $("class-filter").value));
      wanted.sort((a, b) => (a[sortKey] > b[sortKey] ? 1 : a[sortKey] < b[sortKey] ? -1 : 0) * (ascending ? 1 : -1));
      $("count").textContent = `${wanted.length} of ${rows.length} films`;
      const body = $("table").querySelector("tbody");
      body.innerHTML = "";
      for (const r of wanted) {
        const tr = document.createElement("tr");
        tr.className = "clickable" + (r.correct ? "" : " wrong") + (r === current ? " current" : "");
        const cells = [r.path.split("/").pop(), r.label, fmt(r.probability), r.prediction, r.correct ? "yes" : "no",
          r.in_distribution ? "yes" : "FLAGGED", pct(r.lung_share), pct(r.outside_body_share)];
        for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
        tr.title = r.path;
        tr.addEventListener("click", () => openFilm(r));
        r.element = tr;
        body.appendChild(tr);
      }
      position();
    };
    const position = () => {
      const at = wanted.indexOf(current);
      $("position").textContent = at < 0 ? "" : `${at + 1} of ${wanted.length}`;
    };
    const openFilm = async (r) => {
      const ticket = ++opening;  // a later click wins over a slower earlier answer
      try {
        const run = $("run").value;
        const film = await json(await fetch(`/api/runs/${encodeURIComponent(run)}/film?path=${encodeURIComponent(r.path)}`));
        if (ticket !== opening) return;
        if (current && current.element) current.element.classList.remove("current");
        current = r;
        if (r.element) { r.element.classList.add("current"); r.element.scrollIntoView({ block: "nearest" }); }
        $("film-view").hidden = false;
        await viewer.load({ filmPng: film.display.film_png_base64, window: film.display.window, heatPng: film.heatmap_png_base64 });
        const c = film.case;
        $("film-caption").textContent = `${r.path.split("/").pop()}: ${r.label}, p(PNEUMONIA) ${fmt(film.probability)}`;
        showVerdict(r.in_distribution, "");
        $("case").innerHTML = [
          ["label", r.label], ["probability of PNEUMONIA", fmt(film.probability)],
          ["decision", `${r.prediction} at ${fmt(c.threshold, 4)} (${c.threshold_key}; ${r.correct ? "correct" : "WRONG"})`],
          ["map", `${c.method} (target ${c.target})`], ["model", c.model], ["run", `${c.run} (${c.eval_split})`],
        ].map(([k, v]) => `<div><b>${k}</b>: ${escape(v)}</div>`).join("");
        regionFigure($("regions-figure"), [
          { name: "lungs", share: r.lung_share, area: null }, { name: "outside body", share: r.outside_body_share, area: null },
        ]);
        caption = {
          file: `${stem(r.path)}-pneumocam.png`,
          lines: [
            `${r.path.split("/").pop()} (label ${r.label}): p(PNEUMONIA) ${fmt(film.probability)} at threshold ` +
              `${fmt(c.threshold, 4)} (${c.threshold_key}) -> ${r.prediction} (${r.correct ? "correct" : "wrong"})`,
            `map: ${c.method} (target ${c.target}); model: ${c.model}; run ${c.run} (${c.eval_split})`,
            `guard: ${guardText(r.in_distribution, "")}`,
          ],
        };
        position();
      } catch (error) { showError(error.message); }
    };
    const step = (by) => {
      if (!wanted.length) return;
      const at = wanted.indexOf(current);
      const next = at < 0 ? 0 : Math.min(wanted.length - 1, Math.max(0, at + by));
      if (wanted[next] !== current) openFilm(wanted[next]);
    };
    $("next").addEventListener("click", () => step(1));
    $("previous").addEventListener("click", () => step(-1));
    $("export").addEventListener("click", () => caption && viewer.exportPng(caption.lines, caption.file));
    document.addEventListener("keydown", (event) => {
      if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
      const moves = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1 };
      if (moves[event.key]) { event.preventDefault(); step(moves[event.key]); }
    });
    const load = async () => {
      showError("");
      const run = $("run").value;
      if (!run) return;
      current = null;
      $("film-view").hidden = true;
      $("report-link").href = `/runs/${encodeURIComponent(run)}/report.html`;
      try { rows = await json(await fetch(`/api/runs/${encodeURIComponent(run)}/predictions`)); render(); }
      catch (error) { showError(error.message); }
    };
    for (const th of $("table").querySelectorAll("th")) {
      th.addEventListener("click", () => {
        ascending = sortKey === th.dataset.key ? !ascending : true;
        sortKey = th.dataset.key;
        render();
      });
    }
    for (const id of ["only-wrong", "only-flagged", "class-filter"]) $(id).addEventListener("change", render);
    $("run").addEventListener("change", load);
    const runs = await json(await fetch("/api/runs"));
    if (!runs.length) showError("No run folders under --runs.");
    for (const r of runs) {
      const option = document.createElement("option");
      option.value = r.name;
      if (r.error) {
        option.disabled = true;  // listed so the user sees it, with what is wrong with it
        option.textContent = `${r.name} (unreadable: ${r.error})`;
      } else {
        option.textContent = `${r.name} (${r.eval_split}, n=${r.n}, acc ${fmt(r.accuracy)})`;
      }
      $("run").appendChild(option);
    }
    const firstGood = runs.find((r) => !r.error);
    if (firstGood) $("run").value = firstGood.name;
    await load();
  }

  return { explainPage, runsPage };
})();

// The page says which view it is (<script data-page>): no inline script, as the content policy requires.
{
  const page = document.currentScript && document.currentScript.dataset.page;
  if (page === "explain") pneumocam.explainPage();
  else if (page === "runs") pneumocam.runsPage();
}
