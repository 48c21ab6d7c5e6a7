// pneumocam's film viewer: the film and the film with its map side by side on two canvases that share one zoom
// (wheel), pan (drag) and window/level (shift-drag or the sliders), a reset, and a case exported as one PNG with its
// caption. Plain JavaScript, no library, nothing fetched: the page's content policy allows no other origin.
"use strict";
const pneumocamViewer = (() => {
  const ZOOM_STEP = 1.15;  // one wheel notch
  const ZOOM_LIMITS = [0.5, 16];  // of the fitted size
  const IDENTITY_WINDOW = { centre: 127.5, width: 255, source: "none" };

  const image = (base64) => new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the server sent an image the browser cannot draw"));
    img.src = "data:image/png;base64," + base64;
  });

  // The film's grey values (one byte a pixel) from its PNG, read once; window/level recomputes what is drawn.
  function greyValues(img) {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(img, 0, 0);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const grey = new Uint8ClampedArray(canvas.width * canvas.height);
    for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i];
    return { grey, width: canvas.width, height: canvas.height };
  }

  // What both pages show the same way, written once: each element of the viewer with data-viewer="NAME" is filled
  // with PARTS[NAME] before the viewer looks for its canvases and controls.
  const PARTS = {
    pair: `<figure><canvas class="film" id="film-canvas"></canvas><figcaption>the film</figcaption></figure>
      <figure><canvas class="overlay" id="overlay-canvas"></canvas><figcaption>the film and its map (o)</figcaption></figure>`,
    "view-controls": `<button type="button" data-control="reset">reset view (r)</button>
      <button type="button" data-control="toggle-overlay">map on / off (o)</button>
      <span data-control="zoom-text"></span>
      <label>level <input type="range" id="window-centre" data-control="centre" min="0" max="255"></label>
      <label>window <input type="range" id="window-width" data-control="width" min="1" max="512"></label>
      <span data-control="window-text" id="window-text"></span>`,
  };

  class Viewer {
    // root holds canvas.film and canvas.overlay and the controls named below (any may be absent).
    constructor(root) {
      for (const part of root.querySelectorAll("[data-viewer]")) part.innerHTML = PARTS[part.dataset.viewer] || "";
      this.root = root;
      this.canvases = [root.querySelector("canvas.film"), root.querySelector("canvas.overlay")];
      this.control = (name) => root.querySelector(`[data-control="${name}"]`);
      this.film = null;
      this.opacity = 0.6;
      this.showOverlay = true;
      this.showContours = true;
      this.bind();
    }

    async load({ filmPng, window, heatPng, contoursPng }) {
      const [film, heat, contours] = await Promise.all([
        image(filmPng), heatPng ? image(heatPng) : null, contoursPng ? image(contoursPng) : null]);
      this.film = greyValues(film);
      this.heat = heat;
      this.contours = contours;
      this.defaultWindow = window || IDENTITY_WINDOW;
      this.windowed = document.createElement("canvas");
      this.windowed.width = this.film.width;
      this.windowed.height = this.film.height;
      this.reset();
    }

    // The view: a film pixel (u, v) is drawn at (x + u * s, y + v * s) on both canvases, s = fit * zoom.
    fit() {
      const canvas = this.canvases[0];
      return Math.min(canvas.width / this.film.width, canvas.height / this.film.height);
    }

    reset() {
      if (!this.film) return;
      this.size();
      this.zoom = 1;
      const s = this.fit(), canvas = this.canvases[0];
      this.x = (canvas.width - this.film.width * s) / 2;
      this.y = (canvas.height - this.film.height * s) / 2;
      this.setWindow(this.defaultWindow.centre, this.defaultWindow.width);
    }

    size() {  // each canvas draws at its shown size (CSS px times the screen's density)
      const ratio = window.devicePixelRatio || 1;
      for (const canvas of this.canvases) {
        if (!canvas) continue;
        const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
        if (canvas.width !== width) { canvas.width = width; canvas.height = width; }
      }
    }

    zoomAt(factor, cx, cy) {
      const s0 = this.fit() * this.zoom;
      this.zoom = Math.min(ZOOM_LIMITS[1], Math.max(ZOOM_LIMITS[0], this.zoom * factor));
      const s1 = this.fit() * this.zoom;
      // the film point under the cursor stays under it
      this.x = cx - (cx - this.x) * (s1 / s0);
      this.y = cy - (cy - this.y) * (s1 / s0);
      this.draw();
    }

    pan(dx, dy) { this.x += dx; this.y += dy; this.draw(); }

    // Window/level on the film's 0..255 grey: centre c and width w map c - w/2 .. c + w/2 onto black .. white.
    setWindow(centre, width) {
      this.centre = Math.min(255, Math.max(0, centre));
      this.width = Math.min(512, Math.max(1, width));
      const { grey, width: w, height: h } = this.film;
      const low = this.centre - this.width / 2, gain = 255 / this.width;
      const out = new ImageData(w, h), data = out.data;
      for (let i = 0; i < grey.length; i++) {
        const v = (grey[i] - low) * gain;
        data[4 * i] = data[4 * i + 1] = data[4 * i + 2] = v;  // Uint8ClampedArray clamps and rounds
        data[4 * i + 3] = 255;
      }
      this.windowed.getContext("2d").putImageData(out, 0, 0);
      const centreInput = this.control("centre"), widthInput = this.control("width");
      if (centreInput) centreInput.value = Math.round(this.centre);
      if (widthInput) widthInput.value = Math.round(this.width);
      const said = this.control("window-text");
      if (said) {
        said.textContent = `centre ${this.centre.toFixed(0)}, width ${this.width.toFixed(0)}` +
          (this.defaultWindow.source !== "none" ? ` (default: ${this.defaultWindow.source})` : "");
      }
      this.draw();
    }

    draw() {
      if (!this.film) return;
      const s = this.fit() * this.zoom;
      this.canvases.forEach((canvas, i) => {
        if (!canvas) return;
        const context = canvas.getContext("2d", { willReadFrequently: true });
        context.setTransform(1, 0, 0, 1, 0, 0);
        context.fillStyle = "#000";
        context.fillRect(0, 0, canvas.width, canvas.height);
        context.setTransform(s, 0, 0, s, this.x, this.y);
        context.imageSmoothingEnabled = s < 2;  // pixels stay pixels when a reader zooms in on them
        context.drawImage(this.windowed, 0, 0);
        // The map and the contours cover the film's whole extent: the model read the film squashed to a square,
        // so its map stretches back over the film's own aspect the same way.
        context.imageSmoothingEnabled = true;
        if (i === 1 && this.showOverlay && this.heat) {
          context.globalAlpha = this.opacity;
          context.drawImage(this.heat, 0, 0, this.film.width, this.film.height);
          context.globalAlpha = 1;
        }
        if (i === 1 && this.showContours && this.contours) {
          context.drawImage(this.contours, 0, 0, this.film.width, this.film.height);
        }
      });
      // What the view is, readable by people (the zoom) and by tests (data attributes).
      Object.assign(this.root.dataset, {
        zoom: this.zoom.toFixed(4), panX: this.x.toFixed(1), panY: this.y.toFixed(1),
        overlay: String(this.showOverlay),
      });
      const said = this.control("zoom-text");
      if (said) said.textContent = `zoom ${(this.zoom * 100).toFixed(0)}%`;
    }

    setOpacity(value) { this.opacity = value; this.draw(); }
    toggleOverlay() { this.showOverlay = !this.showOverlay; this.draw(); }

    bind() {
      const point = (event, canvas) => {
        const box = canvas.getBoundingClientRect(), ratio = canvas.width / box.width;
        return [(event.clientX - box.left) * ratio, (event.clientY - box.top) * ratio, ratio];
      };
      for (const canvas of this.canvases) {
        if (!canvas) continue;
        canvas.addEventListener("wheel", (event) => {
          if (!this.film) return;
          event.preventDefault();
          const [cx, cy] = point(event, canvas);
          this.zoomAt(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, cx, cy);
        }, { passive: false });
        canvas.addEventListener("pointerdown", (event) => {
          if (!this.film) return;
          canvas.setPointerCapture(event.pointerId);
          const [, , ratio] = point(event, canvas);
          // shift-drag or the right button: window/level (right: wider, down: darker); else pan
          const level = event.shiftKey || event.button === 2;
          let last = [event.clientX, event.clientY];
          const move = (e) => {
            const dx = e.clientX - last[0], dy = e.clientY - last[1];
            last = [e.clientX, e.clientY];
            if (level) this.setWindow(this.centre + dy, this.width + dx);
            else this.pan(dx * ratio, dy * ratio);
          };
          const up = () => {
            canvas.removeEventListener("pointermove", move);
            canvas.removeEventListener("pointerup", up);
          };
          canvas.addEventListener("pointermove", move);
          canvas.addEventListener("pointerup", up);
        });
        canvas.addEventListener("contextmenu", (event) => event.preventDefault());
      }
      const on = (name, type, handler) => { const c = this.control(name); if (c) c.addEventListener(type, handler); };
      on("centre", "input", () => this.setWindow(Number(this.control("centre").value), this.width));
      on("width", "input", () => this.setWindow(this.centre, Number(this.control("width").value)));
      on("reset", "click", () => this.reset());
      on("toggle-overlay", "click", () => this.toggleOverlay());
      window.addEventListener("resize", () => { if (this.film) { this.size(); this.draw(); } });
      document.addEventListener("keydown", (event) => {
        if (!this.film || event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey) return;
        const canvas = this.canvases[0];
        const keys = {
          o: () => this.toggleOverlay(), r: () => this.reset(),
          "+": () => this.zoomAt(ZOOM_STEP, canvas.width / 2, canvas.height / 2),
          "-": () => this.zoomAt(1 / ZOOM_STEP, canvas.width / 2, canvas.height / 2),
        };
        if (keys[event.key]) { keys[event.key](); event.preventDefault(); }
      });
    }

    // One PNG of the case: both canvases as they are shown, the caption's lines drawn under them, and the caption
    // again as the PNG's "Description" text, so the file says what it shows to people and to programs.
    async exportPng(lines, filename) {
      const [left, right] = this.canvases, pad = 12, lineHeight = 18;
      const out = document.createElement("canvas");
      out.width = left.width + right.width + 3 * pad;
      out.height = left.height + 2 * pad + lines.length * lineHeight + pad;
      const context = out.getContext("2d");
      context.fillStyle = "#fff";
      context.fillRect(0, 0, out.width, out.height);
      context.drawImage(left, pad, pad);
      context.drawImage(right, left.width + 2 * pad, pad);
      context.fillStyle = "#1d2330";
      context.font = "14px sans-serif";
      lines.forEach((line, i) => context.fillText(line, pad, left.height + 2 * pad + (i + 0.8) * lineHeight));
      const blob = await new Promise((resolve) => out.toBlob(resolve, "image/png"));
      const withText = withPngText(new Uint8Array(await blob.arrayBuffer()), "Description", lines.join("\n"));
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([withText], { type: "image/png" }));
      link.download = filename;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    }
  }

  // A PNG tEXt chunk (PNG spec 11.3.4.3: keyword, NUL, Latin-1 text; CRC-32 over type and data) after IHDR.
  const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  function crc32(bytes) {
    let c = 0xffffffff;
    for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }
  function withPngText(png, keyword, text) {
    const latin1 = (s) => Array.from(s, (ch) => (ch.charCodeAt(0) < 256 ? ch.charCodeAt(0) : 63));
    const body = Uint8Array.from([...latin1("tEXt" + keyword), 0, ...latin1(text)]);
    const chunk = new Uint8Array(body.length + 8);
    const view = new DataView(chunk.buffer);
    view.setUint32(0, body.length - 4);
    chunk.set(body, 4);
    view.setUint32(body.length + 4, crc32(body));
    const ihdrEnd = 8 + 25;  // signature, then IHDR: length, type, 13 bytes, CRC
    return new Uint8Array([...png.subarray(0, ihdrEnd), ...chunk, ...png.subarray(ihdrEnd)]);
  }

  // The share of the map's mass per region as a small bar chart, with each region's share of the film's area
  // marked (where the map would fall if it were spread evenly).
  function regionFigure(canvas, rows) {
    const ratio = window.devicePixelRatio || 1, width = canvas.clientWidth || 300, rowHeight = 22;
    canvas.width = width * ratio;
    canvas.height = (rows.length * rowHeight + 22) * ratio;
    canvas.style.height = `${rows.length * rowHeight + 22}px`;
    const c = canvas.getContext("2d");
    c.scale(ratio, ratio);
    c.font = "12px sans-serif";
    c.textBaseline = "middle";
    const left = 110, barWidth = width - left - 60;
    rows.forEach(({ name, share, area }, i) => {
      const y = i * rowHeight + 4;
      c.fillStyle = "#1d2330";
      c.fillText(name, 0, y + 8);
      c.fillStyle = "#eef0f4";
      c.fillRect(left, y, barWidth, 16);
      c.fillStyle = "#2f6fde";
      if (share !== null) c.fillRect(left, y, barWidth * share, 16);
      if (area !== null && area !== undefined) {
        c.fillStyle = "#000";
        c.fillRect(left + barWidth * area - 1, y - 2, 2, 20);
      }
      c.fillStyle = "#1d2330";
      c.fillText(share === null ? "n/a" : `${(100 * share).toFixed(1)}%`, left + barWidth + 6, y + 8);
    });
    const y = rows.length * rowHeight + 12;
    c.fillStyle = "#000";
    c.fillRect(left, y - 6, 2, 12);
    c.fillStyle = "#5b6475";
    c.fillText("share of the map's mass; | its share of the film's area", left + 6, y);
  }

  return { Viewer, regionFigure, withPngText, crc32 };
})();
