// What every live demo of the book shares: files brought by scripts, the scene bank, the
// WebAssembly runtime and the nets' sessions (each loaded once per page, whichever demo asks
// first), decoding PNGs, argmax, per-class IU, drawing label maps. Plain JavaScript, no build
// step, nothing from the network.
//
// Everything arrives as <script> files, never through fetch(): a page opened from disk
// (file://) may load scripts beside it but not fetch them. Each data script fills
// self.fcnLiveFiles[name] with a file's bytes, gzip-compressed, then base64
// (fcnlib.export.write_files_script); fileBytes() below undoes that.
//
// A demo is a container <div data-demo="NAME" data-root="FOLDER/"> and the script NAME.js;
// FOLDER is book/_static/live/ as the page sees it (the scene bank is in FOLDER/models/, the
// runtime in FOLDER/ort/). A demo script starts after this one: load core.js first.
"use strict";

(() => {
  const BANK_FORMAT = "fcnlib-live-bank/2";
  const WASM = "ort-wasm-simd.wasm";

  function element(tag, props = {}, children = []) {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  }

  const scripts = new Map(); // src -> Promise: a script is loaded once, however many ask
  function loadScript(src) {
    if (!scripts.has(src)) {
      scripts.set(src, new Promise((resolve, reject) => {
        const script = element("script", { src });
        script.onload = resolve;
        script.onerror = () => reject(new Error(`could not load ${src}: is the file there?`));
        document.head.append(script);
      }));
    }
    return scripts.get(src);
  }

  // The bytes of a file a data script brought (keep: false drops its text once read).
  async function fileBytes(name, { keep = true } = {}) {
    const files = self.fcnLiveFiles || {};
    if (!(name in files)) throw new Error(`no ${name} among the files the scripts brought`);
    const binary = atob(files[name]);
    if (!keep) delete files[name];
    const packed = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) packed[i] = binary.charCodeAt(i);
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function fileJSON(name) {
    return JSON.parse(new TextDecoder().decode(await fileBytes(name)));
  }

  // RGBA pixels of a PNG, as stored: no colour management, no premultiplied alpha.
  async function pngPixels(name) {
    const blob = new Blob([await fileBytes(name)], { type: "image/png" });
    const options = { colorSpaceConversion: "none", premultiplyAlpha: "none" };
    const bitmap = await createImageBitmap(blob, options);
    const canvas = element("canvas", { width: bitmap.width, height: bitmap.height });
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return context.getImageData(0, 0, bitmap.width, bitmap.height);
  }

  // The scene bank (fcnlib.export.write_live_assets), read once per page and root.
  const banks = new Map();
  function bank(root) {
    if (!banks.has(root)) {
      banks.set(root, (async () => {
        await loadScript(root + "models/bank.js");
        const read = await fileJSON("bank.json");
        if (read.format !== BANK_FORMAT) {
          throw new Error(`${root}models/bank.json is ${read.format}, this page reads ${BANK_FORMAT}`);
        }
        return Object.assign(read, { ids: colourIds(read) });
      })());
    }
    return banks.get(root);
  }

  // A label PNG's class ids: its palette colours looked up in the bank's colours.
  function colourIds(read) {
    const ids = new Map();
    const key = (r, g, b) => (r << 16) | (g << 8) | b;
    read.colors.forEach(([r, g, b], id) => ids.set(key(r, g, b), id));
    ids.set(key(...read.void.color), read.void.id);
    return (pixels, file) => {
      const out = new Uint8Array(pixels.width * pixels.height);
      const d = pixels.data;
      for (let i = 0; i < out.length; i++) {
        const id = ids.get(key(d[4 * i], d[4 * i + 1], d[4 * i + 2]));
        if (id === undefined) throw new Error(`${file}: pixel ${i} has no class colour`);
        out[i] = id;
      }
      return out;
    };
  }

  async function labelPng(read, name) {
    return read.ids(await pngPixels(name), name);
  }

  // onnxruntime-web, loaded once per page.
  let runtime = null;
  function ort(root) {
    if (!runtime) {
      runtime = (async () => {
        await loadScript(root + "ort/ort.wasm-core.min.js");
        await loadScript(root + "ort/" + WASM + ".js");
        const wasm = new Blob([await fileBytes(WASM, { keep: false })], { type: "application/wasm" });
        self.ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which file:// lacks
        self.ort.env.wasm.wasmPaths = { [WASM]: URL.createObjectURL(wasm) };
        return self.ort;
      })();
    }
    return runtime;
  }

  // Each net's session, created once per page: {name: InferenceSession}, in the bank's order.
  const sessionsOf = new Map();
  function sessions(root) {
    if (!sessionsOf.has(root)) {
      sessionsOf.set(root, (async () => {
        const read = await bank(root);
        const runtime = await ort(root);
        const out = {};
        for (const net of read.nets) {
          await loadScript(root + "models/" + net.script);
          const model = await fileBytes(net.model, { keep: false });
          // Graph optimisations off: onnxruntime-web 1.18's (from "basic" up) give FCN-8s's
          // second fusion the first one's size when the fusion stages are outputs too, a
          // wrong result that the tests catch (the nets are small: the cost is a few ms).
          out[net.name] = await runtime.InferenceSession.create(model, {
            executionProviders: ["wasm"], graphOptimizationLevel: "disabled",
          });
        }
        return out;
      })());
    }
    return sessionsOf.get(root);
  }

  // One run at a time: a WebAssembly session does not take a second run while one is going.
  let queue = Promise.resolve();
  function serially(task) {
    const done = queue.then(task);
    queue = done.catch(() => {});
    return done;
  }

  // (1, 3, H, W) float32 in [0, 1] from RGBA bytes, as the nets take images.
  function inputTensor(pixels) {
    const n = pixels.width * pixels.height;
    const data = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) data[c * n + i] = pixels.data[4 * i + c] / 255;
    }
    return new self.ort.Tensor("float32", data, [1, 3, pixels.height, pixels.width]);
  }

  // Class ids (H * W) from scores (1, C, H, W): the first of equal maxima, as torch.argmax.
  function argmax(scores, classes, n) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (scores[c * n + i] > scores[best * n + i]) best = c;
      out[i] = best;
    }
    return out;
  }

  // Per-class IU on the pixels that are not void: null for a class in neither map.
  function classIU(labels, truth, classes, voidId) {
    const tp = new Array(classes).fill(0), fp = [...tp], fn = [...tp];
    for (let i = 0; i < truth.length; i++) {
      if (truth[i] === voidId) continue;
      if (labels[i] === truth[i]) tp[truth[i]]++;
      else (fp[labels[i]]++, fn[truth[i]]++);
    }
    return tp.map((t, c) => (t + fp[c] + fn[c] ? t / (t + fp[c] + fn[c]) : null));
  }

  function meanIU(ius) {
    const present = ius.filter((v) => v !== null);
    return present.length ? present.reduce((a, b) => a + b, 0) / present.length : null;
  }

  // A captioned canvas of (width, height) pixels, painted by paint(rgbaBytes).
  function panel(title, width, height, paint) {
    const canvas = element("canvas", { width, height });
    const image = new ImageData(width, height);
    paint(image.data);
    canvas.getContext("2d").putImageData(image, 0, 0);
    return element("figure", {}, [canvas, element("figcaption", { textContent: title })]);
  }

  // Label ids (h * w, row by row) in the bank's colours.
  function paintLabels(read, labels) {
    const colours = new Map(read.colors.map((rgb, id) => [id, rgb]));
    colours.set(read.void.id, read.void.color);
    return (data) => {
      labels.forEach((id, i) => {
        data.set(colours.get(id), 4 * i);
        data[4 * i + 3] = 255;
      });
    };
  }

  function labelPanel(read, title, labels, [h, w]) {
    return panel(title, w, h, paintLabels(read, labels));
  }

  // A demo's container shows the figure computed beforehand instead, saying why.
  function fallback(root, container, message, image, alt) {
    container.replaceChildren(element("div", { className: "fcn-fallback" }, [
      element("p", { textContent: message }),
      element("img", { src: root + "models/" + image, alt }),
    ]));
  }

  const canRun = typeof WebAssembly === "object" && typeof DecompressionStream === "function";

  // Every container of a demo on the page, with its root folder.
  function containers(demo) {
    return [...document.querySelectorAll(`[data-demo="${demo}"]`)].map((node) => ({
      node, root: node.dataset.root ?? "",
    }));
  }

  window.fcnLiveCore = {
    BANK_FORMAT, element, loadScript, fileBytes, fileJSON, pngPixels, bank, labelPng, ort,
    sessions, serially, inputTensor, argmax, classIU, meanIU, panel, paintLabels, labelPanel,
    fallback, canRun, containers,
  };
})();
