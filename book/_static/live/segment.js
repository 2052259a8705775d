// Live segmentation: the lab's FCN-32s, FCN-16s and FCN-8s label a scene of the bank, or one
// the reader draws shapes on, in this page (onnxruntime-web, WebAssembly). Side by side: the
// scene, its ground truth, each net's labels and time; then per-class IU. Needs core.js.
//
// Container: <div data-demo="segment" data-root="FOLDER/">. For tests and for readers' own
// experiments, window.fcnLive has:
//   ready              a Promise, resolved when the nets are loaded (rejected if they fail)
//   scenes, nets       the number of scenes in the bank, the nets' names
//   run(k)             runs every net on scene k of the bank: {scene, size: [h, w], truth: [ids],
//                      nets: {name: {labels: [ids], ms, same}}}: labels row by row (void 255),
//                      ms the run's time, same the share of pixels labelled as PyTorch labels
//                      them (the bank's scenes/k.NAME.png)
//   show(k)            shows scene k in the page, the nets run on it (scene 0 once loaded)
//   stamp({shape, y, x, r, angle})   draws a shape on the scene shown, as a click and drag on
//                      it does, and shows what the nets make of it; the same result as run,
//                      same null (PyTorch never saw the drawing)
//   image()            the scene shown, drawing included: {size: [h, w], rgb: [r, g, b, ...]}
//   times              {name: [ms of each run, in order]}: the first includes warming up
// Each time the scene shown changes, the page's document gets a "fcn-live-scene" event whose
// detail is {pixels: ImageData} (the fusion demo follows it).
"use strict";

(() => {
  const core = window.fcnLiveCore;
  const { element } = core;
  const SHAPES = ["disc", "square", "triangle", "ring", "cross", "bar"];
  const SCALE = 2; // the drawable scene is shown at twice its size
  const times = {};

  // A shape's outline as a canvas path, centred at (x, y), size r, turned by angle.
  function shapePath(context, { shape, x, y, r, angle = 0 }) {
    const path = new Path2D();
    const turn = (u, v) => [x + u * Math.cos(angle) - v * Math.sin(angle),
      y + u * Math.sin(angle) + v * Math.cos(angle)];
    const polygon = (points) => {
      points.map(([u, v]) => turn(u, v)).forEach(([px, py], i) =>
        (i ? path.lineTo(px, py) : path.moveTo(px, py)));
      path.closePath();
    };
    const box = (hu, hv) => polygon([[-hu, -hv], [hu, -hv], [hu, hv], [-hu, hv]]);
    if (shape === "disc") path.arc(x, y, r, 0, 2 * Math.PI);
    else if (shape === "ring") {
      path.arc(x, y, r, 0, 2 * Math.PI);
      path.moveTo(x + 0.5 * r, y);
      path.arc(x, y, 0.5 * r, 0, 2 * Math.PI, true);
    } else if (shape === "square") box(0.8 * r, 0.8 * r);
    else if (shape === "triangle") {
      polygon([0, 1, 2].map((k) => [r * Math.sin(2 * Math.PI * k / 3), -r * Math.cos(2 * Math.PI * k / 3)]));
    } else if (shape === "cross") {
      const w = Math.max(1.5, 0.22 * r);
      polygon([[-r, -w], [-w, -w], [-w, -r], [w, -r], [w, -w], [r, -w], [r, w], [w, w],
        [w, r], [-w, r], [-w, w], [-r, w]]);
    } else if (shape === "bar") box(1.15 * r, Math.max(1.5, 0.12 * r));
    else throw new Error(`no shape ${shape}: one of ${SHAPES.join(", ")}`);
    return path;
  }

  // A colour for the n-th shape drawn: the same sequence in every browser.
  function fillColour(n) {
    const hue = (n * 137.508 + 20) % 360;
    return `hsl(${hue.toFixed(1)}, 70%, ${n % 2 ? 40 : 60}%)`;
  }

  async function start(root) {
    const bank = await core.bank(root);
    const sessions = await core.sessions(root);
    return { root, bank, sessions };
  }

  async function runNets(live, pixels) {
    const n = pixels.width * pixels.height;
    const input = core.inputTensor(pixels);
    const nets = {};
    for (const [name, session] of Object.entries(live.sessions)) {
      const begin = performance.now();
      const output = await session.run({ [live.bank.input]: input }, [live.bank.output]);
      const ms = performance.now() - begin;
      (times[name] = times[name] || []).push(ms);
      nets[name] = { labels: core.argmax(output[live.bank.output].data, live.bank.classes.length, n), ms };
    }
    return nets;
  }

  async function runScene(live, k) {
    const scene = live.bank.scenes[k];
    if (!scene) throw new Error(`no scene ${k}: the bank has ${live.bank.scenes.length}`);
    const pixels = await core.pngPixels(scene.image);
    const truth = await core.labelPng(live.bank, scene.truth);
    const nets = await runNets(live, pixels);
    for (const [name, net] of Object.entries(nets)) {
      const torch = await core.labelPng(live.bank, scene.labels[name]);
      net.same = net.labels.reduce((count, id, i) => count + (id === torch[i]), 0) / truth.length;
    }
    return { scene: k, size: [pixels.height, pixels.width], pixels, truth, nets };
  }

  function scoreTable(bank, result) {
    const names = Object.keys(result.nets);
    const ius = names.map((name) =>
      core.classIU(result.nets[name].labels, result.truth, bank.classes.length, bank.void.id));
    const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1));
    const swatch = (rgb) => element("span", { className: "fcn-swatch", style: `background: rgb(${rgb})` });
    const row = (title, cells, className = "") =>
      element("tr", { className }, [element("td", {}, title), ...cells.map((text) =>
        element("td", { textContent: text }))]);
    const rows = bank.classes.map((cls, c) => row([swatch(bank.colors[c]), cls], ius.map((iu) => pct(iu[c]))));
    rows.push(row(["mean IU"], ius.map((iu) => pct(core.meanIU(iu))), "fcn-mean"));
    rows.push(row(["same as PyTorch (%)"], names.map((name) => pct(result.nets[name].same))));
    rows.push(row(["time (ms)"], names.map((name) => result.nets[name].ms.toFixed(1))));
    const head = element("tr", {}, [element("th", { textContent: "IU (%)" }),
      ...names.map((name) => element("th", { textContent: name }))]);
    return element("table", {}, [element("thead", {}, [head]), element("tbody", {}, rows)]);
  }

  function mount({ node, root }) {
    if (!core.canRun) {
      core.fallback(root, node, "This browser cannot run the nets here (it lacks WebAssembly " +
        "or DecompressionStream). Here is what they say on one scene, computed with PyTorch:",
      "fallback.png", "A lab scene, its ground truth, and each net's labels, computed with PyTorch");
      return null;
    }
    const status = element("span", { className: "fcn-status", textContent: "Loading the nets…" });
    const next = element("button", { type: "button", textContent: "Another scene", disabled: true });
    const picker = element("select", { disabled: true, title: "the shape a drag draws" },
      SHAPES.map((shape) => element("option", { value: shape, textContent: shape })));
    const clear = element("button", { type: "button", textContent: "Remove my shapes", disabled: true });
    const hint = element("span", { className: "fcn-hint",
      textContent: "Drag on the scene to draw a" });
    const drawing = element("canvas", { className: "fcn-drawable", title: "drag to draw a shape" });
    const sceneFigure = element("figure", {}, [drawing, element("figcaption")]);
    const panels = element("div", { className: "fcn-panels" });
    const table = element("div");
    node.replaceChildren(
      element("div", { className: "fcn-controls" }, [next, hint, picker, clear]),
      element("div", { className: "fcn-panels" }, [sceneFigure, panels]), table, status);

    const ready = start(root);
    // What is shown: the bank's scene, the shapes drawn on it, its truth with the shapes.
    const state = { scene: -1, shapes: 0, pixels: null, truth: null, base: null };

    function announce() {
      document.dispatchEvent(new CustomEvent("fcn-live-scene", { detail: { pixels: state.pixels } }));
    }

    function draw(live, result) {
      const [h, w] = result.size;
      drawing.width = w;
      drawing.height = h;
      drawing.style.width = `${SCALE * w}px`;
      drawing.style.height = `${SCALE * h}px`;
      drawing.getContext("2d").putImageData(state.pixels, 0, 0);
      sceneFigure.lastChild.textContent = state.shapes
        ? `scene ${state.scene + 1} of ${live.bank.scenes.length}, ${state.shapes} shape(s) drawn`
        : `scene ${state.scene + 1} of ${live.bank.scenes.length}`;
      const shown = [core.labelPanel(live.bank, "ground truth", result.truth, result.size)];
      for (const [name, net] of Object.entries(result.nets)) {
        shown.push(core.labelPanel(live.bank, `${name} (${net.ms.toFixed(0)} ms)`, net.labels, result.size));
      }
      panels.replaceChildren(...shown);
      table.replaceChildren(scoreTable(live.bank, result));
    }

    async function show(k) {
      const live = await ready;
      const result = await core.serially(() => runScene(live, k));
      Object.assign(state, { scene: k, shapes: 0, pixels: result.pixels, truth: result.truth,
        base: result });
      draw(live, result);
      announce();
      return result;
    }

    // Draws a shape on the scene and its class into the truth: the shape's pixels get its
    // class, the pixels its edge only partly covers are void (255), as around every object of
    // the lab's scenes.
    async function stamp(spec) {
      const live = await ready;
      const { shape } = spec;
      const id = live.bank.classes.indexOf(shape);
      if (id < 1) throw new Error(`no class ${shape}: draw one of ${SHAPES.join(", ")}`);
      const r = Math.max(3, spec.r ?? 12);
      const at = { ...spec, r, angle: spec.angle ?? 0 };
      const { width, height } = state.pixels;
      const canvas = element("canvas", { width, height });
      const context = canvas.getContext("2d", { willReadFrequently: true });
      context.putImageData(state.pixels, 0, 0);
      context.fillStyle = fillColour(state.shapes);
      context.fill(shapePath(context, at), "evenodd");
      const pixels = context.getImageData(0, 0, width, height);
      context.clearRect(0, 0, width, height);
      context.fillStyle = "#fff";
      context.fill(shapePath(context, at), "evenodd");
      const mask = context.getImageData(0, 0, width, height).data;
      const truth = Uint8Array.from(state.truth);
      for (let i = 0; i < truth.length; i++) {
        const a = mask[4 * i + 3];
        if (a === 255) truth[i] = id;
        else if (a > 0) truth[i] = live.bank.void.id;
      }
      const nets = await core.serially(() => runNets(live, pixels));
      for (const net of Object.values(nets)) net.same = null;
      Object.assign(state, { shapes: state.shapes + 1, pixels, truth });
      const result = { scene: state.scene, size: [height, width], pixels, truth, nets, shapes: state.shapes };
      draw(live, result);
      announce();
      return result;
    }

    // A drag on the scene: from the centre, its length the size, its direction the turn.
    let drag = null;
    const at = (event) => {
      const box = drawing.getBoundingClientRect();
      return [(event.clientY - box.top) * drawing.height / box.height,
        (event.clientX - box.left) * drawing.width / box.width];
    };
    drawing.addEventListener("pointerdown", (event) => {
      if (!state.pixels || picker.disabled) return;
      drag = at(event);
      drawing.setPointerCapture(event.pointerId);
    });
    drawing.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const [y, x] = at(event);
      const context = drawing.getContext("2d");
      context.putImageData(state.pixels, 0, 0);
      const r = Math.max(3, Math.hypot(y - drag[0], x - drag[1]));
      context.strokeStyle = "#fff";
      context.stroke(shapePath(context, { shape: picker.value, y: drag[0], x: drag[1], r,
        angle: Math.atan2(y - drag[0], x - drag[1]) }));
    });
    drawing.addEventListener("pointerup", (event) => {
      if (!drag) return;
      const [y, x] = at(event);
      const [y0, x0] = drag;
      drag = null;
      const length = Math.hypot(y - y0, x - x0);
      const spec = { shape: picker.value, y: y0, x: x0, r: length < 3 ? 12 : length,
        angle: length < 3 ? 0 : Math.atan2(y - y0, x - x0) };
      busy(() => stamp(spec));
    });

    const controls = [next, picker, clear];
    function busy(task) {
      controls.forEach((c) => { c.disabled = true; });
      return task()
        .catch((error) => {
          console.error(error);
          status.textContent = `That did not work: ${error.message}`;
        })
        .finally(() => controls.forEach((c) => { c.disabled = false; }));
    }
    next.addEventListener("click", () => busy(() => show((state.scene + 1) % api.scenes)));
    clear.addEventListener("click", () => busy(() => show(state.scene)));

    const api = {
      ready: ready.then((loaded) => {
        Object.assign(api, { scenes: loaded.bank.scenes.length, nets: Object.keys(loaded.sessions) });
      }),
      run: async (k) => {
        const loaded = await ready;
        const { pixels, truth, ...result } = await core.serially(() => runScene(loaded, k));
        return plain({ ...result, truth });
      },
      show: async (k) => plain(await show(k)),
      stamp: async (spec) => plain(await stamp(spec)),
      image: () => ({ size: [state.pixels.height, state.pixels.width], rgb: Array.from(state.pixels.data) }),
      current: () => ({ scene: state.scene, shapes: state.shapes }),
      times,
    };
    function plain({ pixels, ...result }) {
      for (const net of Object.values(result.nets)) net.labels = Array.from(net.labels);
      return { ...result, truth: Array.from(result.truth) };
    }
    ready
      .then(() => show(0))
      .then(() => {
        controls.forEach((c) => { c.disabled = false; });
        status.textContent = "Times are for one run of each net in this browser, on one " +
          "thread; a net's first run also warms it up. PyTorch's labels are known for the " +
          "bank's scenes, not for your drawings.";
      })
      .catch((error) => {
        console.error(error);
        core.fallback(root, node, `The nets could not run here (${error.message}). Here is ` +
          "what they say on one scene, computed with PyTorch:", "fallback.png",
        "A lab scene, its ground truth, and each net's labels, computed with PyTorch");
      });
    return api;
  }

  const mounted = core.containers("segment").map(mount);
  if (mounted[0]) window.fcnLive = mounted[0];
})();
