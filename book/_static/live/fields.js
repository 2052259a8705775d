// Chapter 3's receptive-field explorer: click an output unit of a lab FCN and see, on the
// scene, its analytic receptive field (a box) and its effective field (where the gradient of
// the unit with respect to the input pixels is large). Plain JavaScript, no build step,
// nothing from the network; load core.js first.
//
// The numbers come from fcnlib (fcnlib._live_fields.write_fields_assets, in the data script
// ROOT/models/fields.js): each layer's size, stride and offset from receptive_field, and each
// unit's gradient computed by PyTorch, stored over its analytic box as a tile of an 8-bit
// atlas. This page computes nothing about the net: it places unit (i, j)'s box at
// offset + (i, j) * stride, the definition of a LayerRF, and draws the stored maps.
//
// A container is <div data-demo="fields" data-root="FOLDER/">, FOLDER holding core.js and
// models/. For tests and readers' own experiments, window.fcnFields (the first container) has:
//   ready              a Promise, resolved once the first unit is drawn (rejected if the data
//                      cannot be read; the page then shows the figure made beforehand)
//   layers             the layers' names, once ready
//   readyMs            milliseconds from opening the page to ready
//   select({layer, i, j})  shows unit (i, j) of a layer (either left out: the current one,
//                      or the unit nearest the current centre) and returns {layer, unit: [i, j],
//                      box: [top, left, bottom, right] (clipped to the image, inclusive), size,
//                      stride, centre: [y, x], clipped, mass, erf: {sum, nonzeroOutsideBox}}:
//                      sum adds the unit's stored 8-bit map, nonzeroOutsideBox counts the
//                      pixels outside the box where the map or the drawn heat is not zero
//   clickAt(y, x)      what a click on input pixel (y, x) does: select the nearest unit
"use strict";

(() => {
  const FORMAT = "fcnlib-live-fields/1";
  const ZOOM = 3; // screen pixels per input pixel
  const DIM = 0.55; // the scene is dimmed under the heat (as in fields-fallback.png)
  const HEAT = [[0, 0, 4], [80, 18, 123], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
  const BOX_COLOUR = "#00dcff";
  const core = window.fcnLiveCore;
  const { element } = core;

  // A colour of the heat ramp for v in [0, 1] (fcnlib._live_fields._heat draws the same).
  function heatColour(v) {
    const t = Math.min(Math.max(v, 0), 1) * (HEAT.length - 1);
    const low = Math.min(Math.floor(t), HEAT.length - 2);
    const f = t - low;
    return HEAT[low].map((c, k) => Math.round(c * (1 - f) + HEAT[low + 1][k] * f));
  }

  async function load(root) {
    await core.loadScript(root + "models/fields.js");
    const data = await core.fileJSON("fields.json");
    if (data.format !== FORMAT) {
      throw new Error(`${root}models/fields.json is ${data.format}, this page reads ${FORMAT}`);
    }
    const scene = await core.pngPixels(data.scene);
    const atlases = {};
    for (const layer of data.layers) atlases[layer.name] = await core.pngPixels(layer.atlas);
    return { data, scene, atlases };
  }

  // Unit (i, j)'s field: centre offset + unit * stride, size pixels around it (LayerRF).
  function field(layer, [i, j], [h, w]) {
    const centre = [layer.offset + i * layer.stride, layer.offset + j * layer.stride];
    const [top, left] = centre.map((c) => Math.round(c - (layer.size - 1) / 2));
    const raw = [top, left, top + layer.size - 1, left + layer.size - 1];
    const box = [Math.max(top, 0), Math.max(left, 0), Math.min(raw[2], h - 1),
      Math.min(raw[3], w - 1)];
    return { centre, raw, box };
  }

  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const nearest = (layer, v, n) => clamp(Math.round((v - layer.offset) / layer.stride), 0, n - 1);

  function explorer(node, { data, scene, atlases }) {
    const [h, w] = data.size;
    const byName = new Map(data.layers.map((layer) => [layer.name, layer]));
    const state = { layer: byName.get("pool3") || data.layers[0] }; // the first shown
    state.unit = state.layer.grid.map((n) => Math.floor(n / 2));

    const pick = element("select", { className: "fcn-fields-layer" }, data.layers.map((layer) =>
      element("option", {
        value: layer.name,
        textContent: `${layer.name}: field ${layer.size} px, stride ${layer.stride}`,
      })));
    const view = element("canvas", {
      className: "fcn-fields-view", width: w * ZOOM, height: h * ZOOM, tabIndex: 0,
    });
    view.setAttribute("role", "img");
    const readout = element("p", { className: "fcn-fields-readout" });
    readout.setAttribute("aria-live", "polite");
    const note = element("p", {
      className: "fcn-fields-note",
      textContent: `Click the scene to pick the unit of the layer nearest to that pixel, or ` +
        `focus it and move with the arrow keys. Box: the unit's analytic receptive field ` +
        `(fcnlib's receptive_field), dashed where the image cuts it. Heat: the magnitude of ` +
        `the unit's gradient with respect to each input pixel (square root, each unit scaled ` +
        `to its own maximum), computed with PyTorch on ${data.inputs} when the book was ` +
        `built. Dots: the centres of the unit and of its neighbours, one stride apart.`,
    });
    const label = element("label", {}, ["layer ", pick]);
    node.replaceChildren(element("div", { className: "fcn-fields-controls" }, [label]), view,
      readout, note);

    const base = element("canvas", { width: w, height: h }); // scene and heat, one input pixel each
    const baseContext = base.getContext("2d");
    const context = view.getContext("2d");

    function draw() {
      const layer = state.layer;
      const [i, j] = state.unit;
      const [rows, cols] = layer.grid;
      const { centre, raw, box } = field(layer, [i, j], [h, w]);
      const [top, left, bottom, right] = box;
      const atlas = atlases[layer.name];
      const size = layer.tile;
      // The stored map over the clipped box; what of the tile lies outside it must be zero.
      const heat = new Float32Array(h * w);
      let sum = 0, outside = 0;
      for (let u = 0; u < size; u++) {
        for (let v = 0; v < size; v++) {
          const value = atlas.data[4 * ((i * size + u) * atlas.width + j * size + v)];
          const y = raw[0] + u, x = raw[1] + v;
          if (y < top || y > bottom || x < left || x > right) {
            outside += value > 0;
            continue;
          }
          heat[y * w + x] = value / 255;
          sum += value;
        }
      }
      const image = new ImageData(w, h);
      for (let p = 0; p < h * w; p++) {
        const y = Math.floor(p / w), x = p % w;
        if (heat[p] > 0 && (y < top || y > bottom || x < left || x > right)) outside++;
        const shown = Math.sqrt(heat[p]); // the square root shows the tails
        const alpha = 0.85 * shown;
        const colour = heatColour(shown);
        for (let c = 0; c < 3; c++) {
          const pixel = scene.data[4 * p + c] * DIM;
          image.data[4 * p + c] = Math.round(pixel * (1 - alpha) + colour[c] * alpha);
        }
        image.data[4 * p + 3] = 255;
      }
      baseContext.putImageData(image, 0, 0);
      context.imageSmoothingEnabled = false;
      context.drawImage(base, 0, 0, w * ZOOM, h * ZOOM);

      // The box's edges: solid where the field ends, dashed where the image cuts it.
      const [y0, x0, y1, x1] = [top * ZOOM + 1, left * ZOOM + 1, (bottom + 1) * ZOOM - 1,
        (right + 1) * ZOOM - 1];
      const edges = [
        [[x0, y0], [x1, y0], raw[0] < top], [[x1, y0], [x1, y1], raw[3] > right],
        [[x0, y1], [x1, y1], raw[2] > bottom], [[x0, y0], [x0, y1], raw[1] < left],
      ];
      context.lineWidth = 2;
      context.strokeStyle = BOX_COLOUR;
      for (const [[ax, ay], [bx, by], cut] of edges) {
        context.setLineDash(cut ? [6, 5] : []);
        context.beginPath();
        context.moveTo(ax, ay);
        context.lineTo(bx, by);
        context.stroke();
      }
      context.setLineDash([]);
      // The centres of the unit and of its neighbours up to two units away.
      for (let di = -2; di <= 2; di++) {
        for (let dj = -2; dj <= 2; dj++) {
          const [ni, nj] = [i + di, j + dj];
          if (ni < 0 || nj < 0 || ni >= rows || nj >= cols) continue;
          const cy = (layer.offset + ni * layer.stride + 0.5) * ZOOM;
          const cx = (layer.offset + nj * layer.stride + 0.5) * ZOOM;
          const own = di === 0 && dj === 0;
          context.beginPath();
          context.arc(cx, cy, own ? 5 : 2, 0, 2 * Math.PI);
          context.fillStyle = own ? "#ffffff" : "rgba(255, 255, 255, 0.8)";
          context.fill();
          if (own) {
            context.strokeStyle = "#000000";
            context.lineWidth = 1.5;
            context.stroke();
          }
        }
      }

      const clipped = raw[0] < top || raw[1] < left || raw[2] > bottom || raw[3] > right;
      const mass = layer.mass[i * cols + j];
      const kept = `${bottom - top + 1} × ${right - left + 1}`;
      readout.textContent = `${layer.name} (${layer.kind}), unit (${i}, ${j}) of ` +
        `${rows} × ${cols}, centred on input pixel (${centre[0]}, ${centre[1]}): analytic ` +
        `field ${layer.size} × ${layer.size} px` +
        (clipped ? ` (${kept} of it inside the image)` : "") + `, stride ${layer.stride} px. ` +
        (mass === null
          ? "No gradient reaches this unit on this scene."
          : `${Math.round(100 * data.mass)} % of the gradient lies in ` +
            `${(100 * mass).toFixed(1)} % of the box's pixels inside the image.`);
      view.setAttribute("aria-label", readout.textContent);
      return {
        layer: layer.name, unit: [i, j], box, size: layer.size, stride: layer.stride, centre,
        clipped, mass, erf: { sum, nonzeroOutsideBox: outside },
      };
    }

    function select({ layer, i, j } = {}) {
      if (layer !== undefined) {
        if (!byName.has(layer)) {
          throw new Error(`no layer ${layer}: the layers are ${[...byName.keys()].join(", ")}`);
        }
        const [cy, cx] = field(state.layer, state.unit, [h, w]).centre;
        state.layer = byName.get(layer);
        state.unit = [nearest(state.layer, cy, state.layer.grid[0]),
          nearest(state.layer, cx, state.layer.grid[1])];
      }
      const [rows, cols] = state.layer.grid;
      const unit = [i ?? state.unit[0], j ?? state.unit[1]];
      if (!unit.every(Number.isInteger) || unit[0] < 0 || unit[1] < 0 || unit[0] >= rows ||
          unit[1] >= cols) {
        throw new Error(`no unit (${unit}) in ${state.layer.name}'s ${rows} × ${cols} grid`);
      }
      state.unit = unit;
      pick.value = state.layer.name;
      return draw();
    }

    function clickAt(y, x) {
      const [rows, cols] = state.layer.grid;
      return select({ i: nearest(state.layer, y, rows), j: nearest(state.layer, x, cols) });
    }

    pick.addEventListener("change", () => select({ layer: pick.value }));
    view.addEventListener("click", (event) => {
      const rect = view.getBoundingClientRect();
      const y = Math.floor(((event.clientY - rect.top) * h) / rect.height);
      const x = Math.floor(((event.clientX - rect.left) * w) / rect.width);
      clickAt(clamp(y, 0, h - 1), clamp(x, 0, w - 1));
    });
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    view.addEventListener("keydown", (event) => {
      if (!(event.key in moves)) return;
      event.preventDefault();
      const [rows, cols] = state.layer.grid;
      const [di, dj] = moves[event.key];
      const [i, j] = [state.unit[0] + di, state.unit[1] + dj];
      select({ i: clamp(i, 0, rows - 1), j: clamp(j, 0, cols - 1) });
    });
    select({});
    return { layers: data.layers.map((layer) => layer.name), select, clickAt };
  }

  function start({ node, root }) {
    const alt = "A lab scene, with the analytic receptive field and the input gradient of one " +
      "unit of pool3, pool5 and fc7 of a lab FCN, computed with PyTorch";
    if (typeof DecompressionStream !== "function") {
      core.fallback(root, node, "This browser cannot unpack the explorer's data (it lacks " +
        "DecompressionStream). Here are three units' fields, computed with PyTorch:",
      "fields-fallback.png", alt);
      return Promise.reject(new Error("no DecompressionStream: the fallback figure is shown"));
    }
    node.replaceChildren(element("p", { textContent: "Loading the fields…" }));
    return load(root).then((read) => explorer(node, read)).catch((error) => {
      console.error(error);
      core.fallback(root, node, `The explorer could not start here (${error.message}). Here ` +
        "are three units' fields, computed with PyTorch:", "fields-fallback.png", alt);
      throw error;
    });
  }

  const started = core.containers("fields").map(start);
  if (!started.length) return;
  const ready = started[0].then((live) => {
    Object.assign(window.fcnFields, live, { readyMs: performance.now() });
  });
  ready.catch(() => {}); // reported above; whoever awaits ready gets the error
  started.slice(1).forEach((other) => other.catch(() => {}));
  window.fcnFields = { ready, layers: [] };
})();
