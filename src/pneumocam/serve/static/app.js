// pneumocam's viewer: plain JavaScript, no library, no network beyond this server.
"use strict";
const pneumocam = (() => {
  const $ = (id) => document.getElementById(id);
  const fmt = (v, digits = 3) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? "n/a" : (100 * v).toFixed(1) + "%");

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
    return rows.map(([k, v]) => `<div><b>${k}</b>: ${String(v ?? "n/a").replace(/</g, "&lt;")}</div>`).join("");
  }

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
      `<div>${VARIANT_TEXT[name] || name}: p(PNEUMONIA) <b>${fmt(p)}</b></div>`).join("");
    $("reliance-note").textContent = `Lungs ${found.lungs}; ${found.note}.`;
  }

  async function explainPage() {
    const health = await json(await fetch("/api/health"));
    const model = health.model;
    $("model-banner").innerHTML = model.random_init
      ? '<div class="banner red">This model started from RANDOM weights (no ImageNet pretraining).</div>' : "";
    for (const m of model.methods) {
      const option = document.createElement("option");
      option.value = m;
      option.textContent = `${m} (${(model.method_cost || {})[m] || "fast"})`;
      $("method").appendChild(option);
    }
    const opacity = () => {
      const value = $("opacity").value / 100;
      $("heat").style.opacity = value;
      $("opacity-value").textContent = value.toFixed(2);
    };
    $("opacity").addEventListener("input", opacity);
    $("show-contours").addEventListener("change", () => { $("contours").hidden = !$("show-contours").checked; });
    const send = async (file) => {
      showError("");
      $("busy").hidden = false;
      const form = new FormData();
      form.append("file", file);
      form.append("method", $("method").value);
      form.append("reliance", $("ask-reliance").checked ? "true" : "false");
      try {
        const answer = await json(await fetch("/api/predict", { method: "POST", body: form }));
        $("film").src = "data:image/png;base64," + answer.film_png_base64;
        $("heat").src = "data:image/png;base64," + answer.heatmap_png_base64;
        $("contours").src = "data:image/png;base64," + answer.contours_png_base64;
        $("probability").textContent = fmt(answer.probability);
        $("threshold").textContent = fmt(answer.threshold);
        $("prediction").textContent = answer.prediction;
        const verdict = $("verdict");
        verdict.className = "banner " + (answer.in_distribution ? "green" : "amber");
        verdict.textContent = answer.in_distribution
          ? "In distribution: the film looks like the training films."
          : `OUT OF DISTRIBUTION (${answer.ood_reason}): the probability is shown but is worth little here.`;
        const shares = answer.regions.shares, ratios = answer.regions.ratios;
        // Bars sized through the DOM: the page's content policy allows no inline style attributes.
        $("regions").innerHTML = Object.keys(shares).map((r) =>
          `<div>${r}: <span class="bar" data-share="${shares[r] || 0}"></span> ` +
          `${pct(shares[r])} (ratio ${fmt(ratios[r], 2)})</div>`).join("") +
          `<div><small>lungs: ${answer.regions.lung_source}</small></div>`;
        for (const bar of $("regions").querySelectorAll(".bar")) {
          bar.style.width = `${Math.round(200 * Number(bar.dataset.share))}px`;
        }
        $("pointing").textContent = "Map maximum inside the lungs: " +
          (answer.regions.pointing_lungs === null ? "n/a" : answer.regions.pointing_lungs ? "yes" : "no");
        $("provenance").innerHTML = provenance(answer.model);
        reliance(answer.reliance);
        opacity();
        $("result").hidden = false;
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

  async function runsPage() {
    const columns = [
      ["path", "path"], ["label", "label"], ["probability", "probability"], ["prediction", "prediction"],
      ["correct", "correct?"], ["in_distribution", "in distribution"], ["lung_share", "lung share"],
      ["outside_body_share", "outside-body share"],
    ];
    let rows = [], sortKey = "path", ascending = true;
    $("table").querySelector("thead tr").innerHTML = columns.map(([k, t]) => `<th data-key="${k}">${t}</th>`).join("");
    const render = () => {
      const wanted = rows.filter((r) =>
        (!$("only-wrong").checked || !r.correct) && (!$("only-flagged").checked || !r.in_distribution) &&
        (!$("class-filter").value || r.label === $("class-filter").value));
      wanted.sort((a, b) => (a[sortKey] > b[sortKey] ? 1 : a[sortKey] < b[sortKey] ? -1 : 0) * (ascending ? 1 : -1));
      $("count").textContent = `${wanted.length} of ${rows.length} films`;
      const body = $("table").querySelector("tbody");
      body.innerHTML = "";
      for (const r of wanted) {
        const tr = document.createElement("tr");
        tr.className = "clickable" + (r.correct ? "" : " wrong");
        const cells = [r.path.split("/").pop(), r.label, fmt(r.probability), r.prediction, r.correct ? "yes" : "no",
          r.in_distribution ? "yes" : "FLAGGED", pct(r.lung_share), pct(r.outside_body_share)];
        for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
        tr.title = r.path;
        tr.addEventListener("click", () => openFilm(r));
        body.appendChild(tr);
      }
    };
    const openFilm = async (r) => {
      try {
        const run = $("run").value;
        const film = await json(await fetch(`/api/runs/${encodeURIComponent(run)}/film?path=${encodeURIComponent(r.path)}`));
        $("run-film").src = "data:image/png;base64," + film.film_png_base64;
        $("run-overlay").src = "data:image/png;base64," + film.overlay_png_base64;
        $("film-caption").textContent = `${r.path}: ${r.label}, p(PNEUMONIA) ${fmt(film.probability)}`;
        $("film-view").hidden = false;
      } catch (error) { showError(error.message); }
    };
    const load = async () => {
      showError("");
      const run = $("run").value;
      if (!run) return;
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
