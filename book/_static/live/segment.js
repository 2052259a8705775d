// The lab's FCNs live in the page: a scene of the bank, the ground truth, each net's labels,
// per-class IU and inference times. Plain JavaScript, no build step, nothing from the network.
//
// Everything arrives as <script> files, never through fetch(): a page opened from disk
// (file://) may load scripts beside it but not fetch them. Each data script fills
// self.fcnLiveFiles[name] with a file's bytes, gzip-compressed, then base64
// (fcnlib.export.write_files_script); fileBytes() below undoes that.
//
// The container <div id="fcn-live" data-bank="models/" data-ort="ort/"> names the folders of
// the scene bank (fcnlib.export.write_live_assets) and of onnxruntime-web (book/vendor_ort.py).
// For tests and for readers' own experiments, window.fcnLive has:
//   ready              a Promise, resolved when the nets are loaded (rejected if they fail)
//   scenes, nets       the number of scenes, the nets' names
//   run(k)             runs every net on scene k: {scene, size: [h, w], truth: [ids],
//                      nets: {name: {labels: [ids], ms, same}}}: labels row by row (void
//                      255), ms the run's time, same the share of pixels labelled as
//                      PyTorch labels them (the bank's scenes/k.NAME.png)
//   show(k)            runs them and draws the results in the page (scene 0 once loaded)
//   times              {name: [ms of each run, in order]}: the first includes warming up
"use strict";

(() => {
  const BANK_FORMAT = "fcnlib-live-bank/1";
  const WASM = "ort-wasm-simd.wasm";
  const root = document.getElementById("fcn-live");
  const bankDir = root.dataset.bank || "models/";
  const ortDir = root.dataset.ort || "ort/";

  function element(tag, props = {}, children = []) {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = element("script", { src });
      script.onload = resolve;
      script.onerror = () => reject(new Error(`could not load ${src}: is the file there?`));
      document.head.append(script);
    });
  }

  // The bytes of a file a data script brought; its text is dropped once read.
  async function fileBytes(name) {
    const files = self.fcnLiveFiles || {};
    if (!(name in files)) throw new Error(`no ${name} among the files the scripts brought`);
    const binary = atob(files[name]);
    const packed = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) packed[i] = binary.charCodeAt(i);
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
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

  // A label PNG's class ids: its palette colours looked up in the bank's colours.
  function colourIds(bank) {
    const ids = new Map();
    const key = (r, g, b) => (r << 16) | (g << 8) | b;
    bank.colors.forEach(([r, g, b], id) => ids.set(key(r, g, b), id));
    ids.set(key(...bank.void.color), bank.void.id);
    return (pixels, file) => {
      const out = new Uint8Array(pixels.width * pixels.height);
      for (let i = 0; i < out.length; i++) {
        const d = pixels.data;
        const id = ids.get(key(d[4 * i], d[4 * i + 1], d[4 * i + 2]));
        if (id === undefined) throw new Error(`${file}: pixel ${i} has no class colour`);
        out[i] = id;
      }
      return out;
    };
  }

  // (1, 3, H, W) float32 in [0, 1] from RGBA bytes, as the nets take images.
  function inputTensor(pixels) {
    const n = pixels.width * pixels.height;
    const data = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) data[c * n + i] = pixels.data[4 * i + c] / 255;
    }
    return new ort.Tensor("float32", data, [1, 3, pixels.height, pixels.width]);
  }

  // Class ids (H * W) from logits (1, C, H, W): the first of equal maxima, as torch.argmax.
  function argmax(logits, classes, n) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (logits[c * n + i] > logits[best * n + i]) best = c;
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

  async function start() {
    await loadScript(bankDir + "bank.js");
    const bank = JSON.parse(new TextDecoder().decode(await fileBytes("bank.json")));
    if (bank.format !== BANK_FORMAT) {
      throw new Error(`${bankDir}bank.json is ${bank.format}, this page reads ${BANK_FORMAT}`);
    }
    await loadScript(ortDir + "ort.wasm-core.min.js");
    await loadScript(ortDir + WASM + ".js");
    const wasm = new Blob([await fileBytes(WASM)], { type: "application/wasm" });
    delete self.fcnLiveFiles[WASM];
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which file:// lacks
    ort.env.wasm.wasmPaths = { [WASM]: URL.createObjectURL(wasm) };
    const sessions = {};
    for (const net of bank.nets) {
      await loadScript(bankDir + net.script);
      sessions[net.name] = await ort.InferenceSession.create(await fileBytes(net.model), {
        executionProviders: ["wasm"],
      });
      delete self.fcnLiveFiles[net.model];
    }
    return { bank, sessions, ids: colourIds(bank) };
  }

  // One run at a time: a WebAssembly session does not take a second run while one is going.
  let queue = Promise.resolve();
  const times = {}; // net name -> the time of each of its runs, in order (ms)
  function serially(task) {
    const done = queue.then(task);
    queue = done.catch(() => {});
    return done;
  }

  async function run(live, k) {
    const { bank, sessions, ids } = live;
    const scene = bank.scenes[k];
    if (!scene) throw new Error(`no scene ${k}: the bank has ${bank.scenes.length}`);
    const pixels = await pngPixels(scene.image);
    const truth = ids(await pngPixels(scene.truth), scene.truth);
    const n = pixels.width * pixels.height;
    const input = inputTensor(pixels);
    const nets = {};
    for (const [name, session] of Object.entries(sessions)) {
      const begin = performance.now();
      const output = await session.run({ [bank.input]: input });
      const ms = performance.now() - begin;
      (times[name] = times[name] || []).push(ms);
      const labels = argmax(output[bank.output].data, bank.classes.length, n);
      const torch = ids(await pngPixels(scene.labels[name]), scene.labels[name]);
      const same = labels.reduce((count, id, i) => count + (id === torch[i]), 0) / n;
      nets[name] = { labels, ms, same };
    }
    return { scene: k, size: [pixels.height, pixels.width], pixels, truth, nets };
  }

  function panel(title, width, height, paint) {
    const canvas = element("canvas", { width, height });
    const image = new ImageData(width, height);
    paint(image.data);
    canvas.getContext("2d").putImageData(image, 0, 0);
    return element("figure", {}, [canvas, element("figcaption", { textContent: title })]);
  }

  function colourPanel(title, labels, bank, [h, w]) {
    const colours = new Map(bank.colors.map((rgb, id) => [id, rgb]));
    colours.set(bank.void.id, bank.void.color);
    return panel(title, w, h, (data) => {
      labels.forEach((id, i) => {
        data.set(colours.get(id), 4 * i);
        data[4 * i + 3] = 255;
      });
    });
  }

  function scoreTable(bank, result) {
    const names = Object.keys(result.nets);
    const ius = names.map((name) =>
      classIU(result.nets[name].labels, result.truth, bank.classes.length, bank.void.id));
    const pct = (v) => (v === null ? "–" : (100 * v).toFixed(1));
    const swatch = (rgb) => element("span", { className: "fcn-swatch", style: `background: rgb(${rgb})` });
    const rows = bank.classes.map((cls, c) =>
      element("tr", {}, [
        element("td", {}, [swatch(bank.colors[c]), cls]),
        ...ius.map((iu) => element("td", { textContent: pct(iu[c]) })),
      ]));
    const mean = ius.map((iu) => {
      const present = iu.filter((v) => v !== null);
      return present.reduce((a, b) => a + b, 0) / present.length;
    });
    rows.push(element("tr", { className: "fcn-mean" }, [
      element("td", { textContent: "mean IU" }),
      ...mean.map((v) => element("td", { textContent: pct(v) })),
    ]));
    rows.push(element("tr", {}, [
      element("td", { textContent: "same as PyTorch (%)" }),
      ...names.map((name) => element("td", { textContent: pct(result.nets[name].same) })),
    ]));
    rows.push(element("tr", {}, [
      element("td", { textContent: "time (ms)" }),
      ...names.map((name) => element("td", { textContent: result.nets[name].ms.toFixed(1) })),
    ]));
    const head = element("tr", {}, [element("th", { textContent: "IU (%)" }),
      ...names.map((name) => element("th", { textContent: name }))]);
    return element("table", {}, [element("thead", {}, [head]), element("tbody", {}, rows)]);
  }

  function draw(bank, result, view) {
    const size = result.size;
    const scene = panel(`scene ${result.scene + 1} of ${bank.scenes.length}`, size[1], size[0],
      (data) => data.set(result.pixels.data));
    const panels = [scene, colourPanel("ground truth", result.truth, bank, size)];
    for (const [name, net] of Object.entries(result.nets)) {
      panels.push(colourPanel(`${name} (${net.ms.toFixed(0)} ms)`, net.labels, bank, size));
    }
    view.panels.replaceChildren(...panels);
    view.table.replaceChildren(scoreTable(bank, result));
  }

  function showFallback(message) {
    const image = element("img", {
      src: bankDir + "fallback.png",
      alt: "A lab scene, its ground truth, and each net's labels, computed with PyTorch",
    });
    root.replaceChildren(element("div", { className: "fcn-fallback" }, [
      element("p", { textContent: message }), image]));
  }

  if (typeof WebAssembly !== "object" || typeof DecompressionStream !== "function") {
    showFallback("This browser cannot run the nets here (it lacks WebAssembly or " +
      "DecompressionStream). Here is what they say on one scene, computed with PyTorch:");
    return;
  }

  const status = element("span", { className: "fcn-status", textContent: "Loading the nets…" });
  const button = element("button", { type: "button", textContent: "Another scene", disabled: true });
  const view = { panels: element("div", { className: "fcn-panels" }), table: element("div") };
  root.replaceChildren(element("div", { className: "fcn-controls" }, [button, status]),
    view.panels, view.table);

  const ready = start();
  let current = -1;
  async function show(k) {
    const live = await ready;
    const result = await serially(() => run(live, k));
    draw(live.bank, result, view);
    current = k;
    return result;
  }
  window.fcnLive = {
    ready: ready.then((live) => {
      Object.assign(window.fcnLive, { scenes: live.bank.scenes.length, nets: Object.keys(live.sessions) });
    }),
    run: async (k) => {
      const live = await ready;
      const { pixels, truth, ...result } = await serially(() => run(live, k));
      const plain = (labels) => Array.from(labels);
      for (const net of Object.values(result.nets)) net.labels = plain(net.labels);
      return { ...result, truth: plain(truth) };
    },
    show,
    times,
  };
  button.addEventListener("click", () => {
    button.disabled = true;
    show((current + 1) % window.fcnLive.scenes)
      .catch((error) => {
        console.error(error);
        status.textContent = `That scene could not be shown: ${error.message}`;
      })
      .finally(() => { button.disabled = false; });
  });
  ready
    .then(() => show(0))
    .then(() => {
      button.disabled = false;
      status.textContent = "Times are for one run of each net in this browser, on one " +
        "thread; a net's first run also warms it up.";
    })
    .catch((error) => {
      console.error(error);
      showFallback(`The nets could not run here (${error.message}). Here is what they say on ` +
        "one scene, computed with PyTorch:");
    });
})();
