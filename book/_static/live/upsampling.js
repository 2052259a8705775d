// Chapter 4's explorer: transposed convolution ("deconvolution") and shift-and-stitch, with
// sliders. Every number on the page was computed beforehand by PyTorch and fcnlib
// (fcnlib/_live_upsampling.py: F.conv_transpose2d, bilinear_kernel, shift_and_stitch); the
// page only selects and draws. Plain JavaScript, no build step, nothing from the network.
//
// The container <div data-demo="upsampling" data-root="FOLDER/"> names the folder of core.js
// (load core.js first); the data is the script FOLDER/models/upsampling.js. For tests and for
// readers' own experiments, window.fcnUpsampling (the first container's) has, once ready (before,
// the functions return Promises of the same):
//   ready                               a Promise, resolved once the data is drawn
//   setDeconv({stride, kernel, weights}) moves the controls ("ones" or "bilinear") and returns
//                                       {stride, kernel, weights, output: [[...]], interior,
//                                       interiorEven, min, max} as drawn
//   setShifts(n)                        runs n of the 64 shifted copies: {n, filled} (pixels)
//   pixelSource(y, x)                   shows where pixel (y, x) comes from: {dy, dx, i, j}
//   current()                           what the page shows now: {deconv, shifts, pixel}
"use strict";

(() => {
  const FORMAT = "fcnlib-live-upsampling/1";
  const core = window.fcnLiveCore;
  const { element } = core;
  const GREY = [190, 190, 190]; // pixels that no copy run so far has filled
  const BLUES = [[247, 251, 255], [107, 174, 214], [8, 48, 107]]; // 0 .. the largest value
  const OUTPUT_PX = 448; // the output grid's side on screen, whatever its number of cells

  function slider(label, className, min, max, value) {
    const input = element("input", { type: "range", className, min, max, value, step: 1 });
    const shown = element("output", { textContent: String(value) });
    input.addEventListener("input", () => { shown.textContent = input.value; });
    return { node: element("label", {}, [`${label} `, input, " ", shown]), input, shown };
  }

  function blue(t) {
    const [a, b] = t < 0.5 ? [BLUES[0], BLUES[1]] : [BLUES[1], BLUES[2]];
    const u = t < 0.5 ? 2 * t : 2 * t - 1;
    return a.map((v, c) => Math.round(v + (b[c] - v) * u));
  }

  // The cell (column, row) of a columns x rows grid drawn over the whole canvas that a mouse
  // event points at (from the canvas' box on screen: offsetX and offsetY are whole pixels).
  function at(canvas, event, columns, rows) {
    const box = canvas.getBoundingClientRect();
    return [Math.floor(((event.clientX - box.left) / box.width) * columns),
      Math.floor(((event.clientY - box.top) / box.height) * rows)];
  }

  const number = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(2).replace(/0$/, ""));

  // ------------------------------------------------------------ (a) transposed convolution

  function deconvPart(data) {
    const stride = slider("stride s", "fcn-stride", 1, Math.max(...data.strides), 2);
    const kernel = slider("kernel size k", "fcn-kernel", 1, Math.max(...data.kernels), 3);
    const radio = (value, text) => {
      const input = element("input", { type: "radio", name: `fcn-weights-${uid}`, value });
      return { input, node: element("label", { className: `fcn-weights-${value}` }, [input, text]) };
    };
    const ones = radio("ones", " all ones");
    const bilinear = radio("bilinear", " bilinear");
    ones.input.checked = true;
    const fcnButton = element("button", { type: "button", textContent: "FCN's kernel for this s" });
    const input = element("canvas", { className: "fcn-input-grid" });
    const output = element("canvas", { className: "fcn-output-grid" });
    const verdict = element("p", { className: "fcn-verdict" });
    const footprint = element("p", { className: "fcn-footprint" });
    const scale = element("p", { className: "fcn-scale" });
    const node = element("section", { className: "fcn-deconv" }, [
      element("h3", { textContent: "Transposed convolution: where the kernel copies land" }),
      element("div", { className: "fcn-controls" }, [
        stride.node, kernel.node,
        element("span", { className: "fcn-weights" }, [ones.node, bilinear.node]), fcnButton,
      ]),
      element("div", { className: "fcn-panels" }, [
        element("figure", {}, [input, element("figcaption", {
          textContent: "input: all ones (point at a cell)" })]),
        element("figure", {}, [output, element("figcaption", {
          textContent: "output of conv_transpose2d (padding 0); dashed: the interior" })]),
      ]),
      scale, verdict, footprint,
    ]);
    const state = { cell: null, shown: null };

    const weightsNow = () => (bilinear.input.checked ? "bilinear" : "ones");
    function caseNow() {
      const s = Number(stride.input.value), k = Number(kernel.input.value);
      const cases = data.deconv[`${s},${k}`];
      bilinear.input.disabled = !cases.bilinear;
      bilinear.node.title = cases.bilinear ? "" :
        `the bilinear kernel of factor s = ${s} has size ${2 * s - 1} or ${2 * s}`;
      if (!cases.bilinear && bilinear.input.checked) ones.input.checked = true;
      const weights = weightsNow();
      return { s, k, weights, c: cases[weights] };
    }

    function drawInput(c) {
      const n = c.grid, cell = 22;
      input.width = input.height = n * cell;
      const g = input.getContext("2d");
      g.fillStyle = `rgb(${blue(0.35)})`;
      g.fillRect(0, 0, n * cell, n * cell);
      g.strokeStyle = "white";
      for (let t = 0; t <= n; t++) {
        g.beginPath(); g.moveTo(t * cell, 0); g.lineTo(t * cell, n * cell); g.stroke();
        g.beginPath(); g.moveTo(0, t * cell); g.lineTo(n * cell, t * cell); g.stroke();
      }
      if (state.cell) {
        g.strokeStyle = "#d62728";
        g.lineWidth = 3;
        g.strokeRect(state.cell[1] * cell + 1.5, state.cell[0] * cell + 1.5, cell - 3, cell - 3);
      }
    }

    function drawOutput(c) {
      const side = c.output.length;
      const cell = Math.floor(OUTPUT_PX / side);
      output.width = output.height = side * cell;
      const g = output.getContext("2d");
      const top = Math.max(...c.output.flat(), 1e-9);
      g.font = `${Math.min(14, Math.floor(cell * 0.42))}px system-ui, sans-serif`;
      g.textAlign = "center";
      g.textBaseline = "middle";
      c.output.forEach((row, y) => row.forEach((v, x) => {
        const t = v / top;
        g.fillStyle = `rgb(${blue(t)})`;
        g.fillRect(x * cell, y * cell, cell - 1, cell - 1); // a 1-pixel gap shows the cells
        if (cell >= 18) {
          g.fillStyle = t > 0.55 ? "white" : "black";
          g.fillText(number(v), x * cell + cell / 2, y * cell + cell / 2);
        }
      }));
      const [a, b] = c.interior;
      g.setLineDash([6, 4]);
      g.lineWidth = 2;
      g.strokeStyle = "#ff7f0e";
      g.strokeRect(a * cell, a * cell, (b - a + 1) * cell - 1, (b - a + 1) * cell - 1);
      g.setLineDash([]);
      if (state.cell) {
        const [t0, l0, b0, r0] = c.footprints[state.cell[0] * c.grid + state.cell[1]];
        g.lineWidth = 3;
        g.strokeStyle = "#d62728";
        g.strokeRect(l0 * cell + 1.5, t0 * cell + 1.5, (r0 - l0 + 1) * cell - 4, (b0 - t0 + 1) * cell - 4);
      }
      scale.replaceChildren(
        "colour: 0 ", element("span", { className: "fcn-ramp" }), ` ${number(top)}`,
        cell >= 18 ? "" : " (point at the output for a value)");
    }

    function describe({ s, k, weights, c }) {
      const [a, b] = c.interior;
      const where = `The interior (rows and columns ${a}–${b}, dashed)`;
      let text;
      if (weights === "bilinear") {
        text = `${where} is even: every pixel gets ${number(c.min)}. The bilinear kernel of size ` +
          `${k} is a tent of half-width s = ${s}: the weights that land on any pixel add up to 1` +
          (k === data.fcnKernels[s] ? ` (FCN's choice for s = ${s}: k = 2s − s mod 2 = ${k}).` : ".");
      } else if (c.interiorEven) {
        text = `${where} is even: every pixel gets ${number(c.min)} kernel copies. ` +
          `k = ${k} is a multiple of s = ${s}, so (k / s)² = ${(k / s) ** 2} copies cover each pixel.`;
      } else {
        text = `${where} is a checkerboard: from ${number(c.min)} to ${number(c.max)} kernel ` +
          `copies per pixel. k = ${k} is not a multiple of s = ${s}, so ` + (k < s ?
          "the copies leave gaps: some pixels get none." :
          "the copies overlap more on some rows and columns than on others.");
      }
      verdict.textContent = text;
      verdict.dataset.even = String(c.interiorEven);
      if (state.cell) {
        const [t0, l0, b0, r0] = c.footprints[state.cell[0] * c.grid + state.cell[1]];
        footprint.textContent = `Input cell (${state.cell.join(", ")}) scatters its kernel ` +
          `copy to output rows ${t0}–${b0}, columns ${l0}–${r0}: a ${k} × ${k} window starting ` +
          `at s × (${state.cell.join(", ")}).`;
      } else {
        footprint.textContent = "Point at an input cell to see the window it scatters to.";
      }
    }

    function update() {
      const now = caseNow();
      if (state.cell && Math.max(...state.cell) >= now.c.grid) state.cell = null;
      drawInput(now.c);
      drawOutput(now.c);
      describe(now);
      const { c } = now;
      state.shown = {
        stride: now.s, kernel: now.k, weights: now.weights, output: c.output,
        interior: c.interior, interiorEven: c.interiorEven, min: c.min, max: c.max,
        cell: state.cell,
      };
      return state.shown;
    }

    function pick(event) {
      const n = caseNow().c.grid;
      const [x, y] = at(input, event, n, n);
      if (x < 0 || y < 0 || x >= n || y >= n) return;
      if (state.cell && state.cell[0] === y && state.cell[1] === x) return;
      state.cell = [y, x];
      update();
    }
    input.addEventListener("mousemove", pick);
    input.addEventListener("click", pick);
    output.addEventListener("mousemove", (event) => {
      const c = caseNow().c, side = c.output.length;
      const [x, y] = at(output, event, side, side);
      if (x >= 0 && y >= 0 && x < side && y < side) {
        output.title = `output (${y}, ${x}): ${number(c.output[y][x])}`;
      }
    });
    for (const control of [stride.input, kernel.input, ones.input, bilinear.input]) {
      control.addEventListener("input", update);
      control.addEventListener("change", update);
    }
    fcnButton.addEventListener("click", () => {
      kernel.input.value = kernel.shown.textContent = String(data.fcnKernels[stride.input.value]);
      bilinear.input.disabled = false;
      bilinear.input.checked = true;
      update();
    });

    function set({ stride: s, kernel: k, weights = "ones" }) {
      const cases = data.deconv[`${s},${k}`];
      if (!cases) throw new Error(`no stride ${s} and kernel ${k}: s runs over ${data.strides}, k over ${data.kernels}`);
      if (!cases[weights]) throw new Error(`no ${weights} kernel for s = ${s}, k = ${k}`);
      stride.input.value = stride.shown.textContent = String(s);
      kernel.input.value = kernel.shown.textContent = String(k);
      (weights === "bilinear" ? bilinear : ones).input.checked = true;
      return update();
    }
    state.cell = [2, 2];
    update();
    return { node, set, shown: () => state.shown };
  }

  // -------------------------------------------------------------------- (b) shift-and-stitch

  function stitchPart(data, scene) {
    const st = data.stitch;
    const [h, w] = st.size;
    const total = h * w;
    const copies = st.f * st.f;
    const colours = new Map(data.colors.map((rgb, id) => [id, rgb]));
    colours.set(data.void.id, data.void.color);
    const rankOf = new Array(copies); // copy dy * f + dx -> when the page adds it (0 first)
    st.order.forEach(([dy, dx], r) => { rankOf[dy * st.f + dx] = r; });
    const rank = new Uint8Array(total);
    for (let p = 0; p < total; p++) rank[p] = rankOf[st.sources.dy[p] * st.f + st.sources.dx[p]];
    const [ch, cw] = st.coarseSize;
    const coarseUp = Array.from({ length: total },
      (_, p) => st.coarse[st.sources.i[p] * cw + st.sources.j[p]]);

    const shifts = slider("shifted copies run", "fcn-shifts", 1, copies, copies);
    const canvas = (className) => {
      const node = element("canvas", { className, width: w, height: h });
      node.style.aspectRatio = `${w} / ${h}`;
      return node;
    };
    const sceneCanvas = canvas("fcn-scene");
    sceneCanvas.getContext("2d").putImageData(scene, 0, 0);
    const stitched = canvas("fcn-stitched");
    const bilinear = canvas("fcn-bilinear");
    const coarse = canvas("fcn-coarse");
    const figure = (node, text) => element("figure", {}, [node, element("figcaption", { textContent: text })]);
    const filledLine = element("p", { className: "fcn-filled" });
    const sourceLine = element("p", { className: "fcn-source",
      textContent: "Click a pixel to see which copy and which cell it comes from." });
    const pct = (100 * st.agree / total).toFixed(1);
    const agreeLine = element("p", { className: "fcn-agree", textContent:
      `With all ${copies} copies, shift-and-stitch and the net's bilinear upsampling give the ` +
      `same label to ${st.agree.toLocaleString("en")} of ${total.toLocaleString("en")} pixels ` +
      `(${pct}%).` });
    const node = element("section", { className: "fcn-stitch" }, [
      element("h3", { textContent: `Shift-and-stitch: ${copies} shifted copies of a stride-${st.f} net` }),
      element("div", { className: "fcn-controls" }, [shifts.node]),
      element("div", { className: "fcn-panels" }, [
        figure(sceneCanvas, "the scene"),
        figure(stitched, "shift-and-stitch (grey: not run yet)"),
        figure(bilinear, "the net's output (bilinear upsampling)"),
        figure(coarse, `coarse scores, stride ${st.f} (${ch} × ${cw})`),
      ]),
      filledLine, sourceLine, agreeLine,
    ]);
    const state = { n: copies, filled: total, pixel: null };

    function paint(target, labels, filled = () => true) {
      const image = new ImageData(w, h);
      for (let p = 0; p < total; p++) {
        image.data.set(filled(p) ? colours.get(labels[p]) : GREY, 4 * p);
        image.data[4 * p + 3] = 255;
      }
      target.getContext("2d").putImageData(image, 0, 0);
    }

    function mark(target, [y, x], size) {
      const g = target.getContext("2d");
      g.lineWidth = 1;
      g.strokeStyle = "white";
      g.strokeRect(x - 1.5, y - 1.5, size + 2, size + 2);
    }

    function draw() {
      paint(stitched, st.dense, (p) => rank[p] < state.n);
      paint(bilinear, st.bilinear);
      paint(coarse, coarseUp);
      if (state.pixel) {
        const { y, x, i, j } = state.pixel;
        mark(stitched, [y, x], 1);
        mark(bilinear, [y, x], 1);
        mark(coarse, [i * st.f, j * st.f], st.f);
      }
    }

    function setShifts(n) {
      if (!(Number.isInteger(n) && n >= 1 && n <= copies)) {
        throw new Error(`n must be a whole number of copies from 1 to ${copies}, got ${n}`);
      }
      shifts.input.value = shifts.shown.textContent = String(n);
      state.n = n;
      state.filled = rank.reduce((count, r) => count + (r < n), 0);
      filledLine.textContent = `${n} of ${copies} copies run (${n} times the work of one pass ` +
        `of the net): ${state.filled.toLocaleString("en")} of ${total.toLocaleString("en")} ` +
        "pixels have a label.";
      draw();
      describePixel();
      return { n, filled: state.filled };
    }

    function describePixel() {
      if (!state.pixel) return;
      const { y, x, dy, dx, i, j } = state.pixel;
      const p = y * w + x;
      const run = rank[p] < state.n;
      const label = data.classes[st.dense[p]] ?? "void";
      sourceLine.textContent = `Pixel (${y}, ${x}) comes from copy (dy, dx) = (${dy}, ${dx}), the ` +
        `scene shifted up by ${dy} and left by ${dx}: cell (i, j) = (${i}, ${j}) of its ` +
        `${ch} × ${cw} output, (${st.f}·${i} + ${dy}, ${st.f}·${j} + ${dx}) = (${y}, ${x}). ` +
        (run ? `Its label: ${label}.` : `That copy has not run yet (it is number ${rank[p] + 1}).`);
    }

    function pixelSource(y, x) {
      if (!(Number.isInteger(y) && Number.isInteger(x) && y >= 0 && x >= 0 && y < h && x < w)) {
        throw new Error(`no pixel (${y}, ${x}): the scene is ${h} × ${w}`);
      }
      const p = y * w + x;
      const src = { dy: st.sources.dy[p], dx: st.sources.dx[p], i: st.sources.i[p], j: st.sources.j[p] };
      state.pixel = { y, x, ...src };
      draw();
      describePixel();
      return src;
    }

    for (const target of [sceneCanvas, stitched, bilinear, coarse]) {
      target.addEventListener("click", (event) => {
        const [x, y] = at(target, event, w, h);
        pixelSource(Math.min(h - 1, Math.max(0, y)), Math.min(w - 1, Math.max(0, x)));
      });
    }
    shifts.input.addEventListener("input", () => setShifts(Number(shifts.input.value)));
    setShifts(copies);
    return { node, setShifts, pixelSource, shown: () => ({ n: state.n, filled: state.filled }),
      pixel: () => state.pixel };
  }

  // ---------------------------------------------------------------------------------- start

  let uid = 0;
  async function start(container, root) {
    await core.loadScript(root + "models/upsampling.js");
    const data = await core.fileJSON("upsampling.json");
    if (data.format !== FORMAT) {
      throw new Error(`${root}models/upsampling.json is ${data.format}, this page reads ${FORMAT}`);
    }
    const scene = await core.pngPixels(data.stitch.image);
    uid += 1;
    const deconv = deconvPart(data);
    const stitch = stitchPart(data, scene);
    container.replaceChildren(deconv.node, stitch.node);
    return {
      setDeconv: deconv.set,
      setShifts: stitch.setShifts,
      pixelSource: stitch.pixelSource,
      current: () => ({ deconv: deconv.shown(), shifts: stitch.shown(), pixel: stitch.pixel() }),
    };
  }

  const FALLBACK = "upsampling-fallback.png";
  const ALT = "Transposed convolutions with stride 2 (kernel 3: a checkerboard; kernel 4: even), " +
    "and a lab scene labelled by shift-and-stitch, by bilinear upsampling and coarsely";
  const apis = core.containers("upsampling").map(({ node, root }) => {
    node.classList.add("fcn-upsampling");
    if (typeof DecompressionStream !== "function") {
      core.fallback(root, node, "This browser cannot unpack the explorer's data (it lacks " +
        "DecompressionStream). Here is what it shows, computed with PyTorch:", FALLBACK, ALT);
      return Promise.reject(new Error("no DecompressionStream: the page shows the figure"));
    }
    node.replaceChildren(element("p", { className: "fcn-status", textContent: "Loading…" }));
    return start(node, root).catch((error) => {
      console.error(error);
      core.fallback(root, node, `The explorer could not start here (${error.message}). Here ` +
        "is what it shows, computed with PyTorch:", FALLBACK, ALT);
      throw error;
    });
  });
  const first = apis[0] ?? Promise.reject(new Error('no <div data-demo="upsampling"> on the page'));
  for (const api of [first, ...apis]) api.catch(() => {}); // reported above, not unhandled
  const later = (name) => async (...args) => (await first)[name](...args);
  window.fcnUpsampling = {
    ready: first.then(() => undefined),
    setDeconv: later("setDeconv"),
    setShifts: later("setShifts"),
    pixelSource: later("pixelSource"),
    current: later("current"),
  };
  window.fcnUpsampling.ready.catch(() => {});
  first.then((api) => Object.assign(window.fcnUpsampling, api), () => {}); // synchronous once ready
})();
