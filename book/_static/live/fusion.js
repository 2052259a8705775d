// Skip fusion step by step (Chapter 5): the finest net of the bank (FCN-8s) on the scene shown
// by the segmentation demo (or the bank's first scene), each class-score map of its fusion as
// the net computes it: score_fr at stride 32; then, per skip, the coarser scores upsampled 2x,
// the skip's own scores and their sum; then the final upsampling. Each map is drawn as its
// labels (argmax), at its own resolution. Needs core.js.
//
// Container: <div data-demo="fusion" data-root="FOLDER/">. window.fcnFusion has:
//   ready          a Promise, resolved when the net is loaded
//   steps          the number of steps (FCN-8s: 4)
//   step(n)        shows step n (0-based): {step, net, maps: {name: {size: [h, w], labels}},
//                  changed}: changed is the share of the fused map's labels that the skip
//                  changed from the upsampled coarser labels (null at the first and last step)
//   use(pixels)    runs the net on an ImageData and shows the current step
"use strict";

(() => {
  const core = window.fcnLiveCore;
  const { element } = core;

  // The steps of a net's fusion, from its outputs (fcnlib.export.fusion_stages).
  function stepsOf(outputs) {
    const steps = [{ title: "stride 32: the last layer's class scores", maps: ["score_fr"] }];
    const stages = outputs.slice(2); // after "logits" and "score_fr": (up, skip, fuse) triples
    for (let i = 0; i + 2 < stages.length; i += 3) {
      const [up, skip, fuse] = stages.slice(i, i + 3);
      steps.push({ title: `${fuse}: ${up} + ${skip}`, maps: [up, skip, fuse], up, fuse });
    }
    steps.push({ title: "the final upsampling to the image", maps: [outputs[0]] });
    return steps;
  }

  const CAPTIONS = {
    score_fr: "score_fr (stride 32)",
    upscore2: "upscore2: score_fr, 2x",
    score_pool4: "score_pool4: pool4's scores",
    fuse_pool4: "fuse_pool4 = sum (stride 16)",
    upscore_pool4: "upscore_pool4: fuse_pool4, 2x",
    score_pool3: "score_pool3: pool3's scores",
    fuse_pool3: "fuse_pool3 = sum (stride 8)",
    logits: "final: fuse, upsampled to the image",
  };

  function mount({ node, root }) {
    if (!core.canRun) {
      core.fallback(root, node, "This browser cannot run the net here (it lacks WebAssembly or " +
        "DecompressionStream). Here are its fusion's stages on one scene, computed with PyTorch:",
      "fusion-fallback.png", "A lab scene and the labels of FCN-8s's scores at stride 32, 16 " +
        "and 8 and of its output, computed with PyTorch");
      return null;
    }
    const back = element("button", { type: "button", textContent: "◀ Previous step", disabled: true });
    const next = element("button", { type: "button", textContent: "Next step ▶", disabled: true });
    const title = element("span", { className: "fcn-status", textContent: "Loading the net…" });
    const panels = element("div", { className: "fcn-panels" });
    const note = element("p", { className: "fcn-status" });
    node.replaceChildren(element("div", { className: "fcn-controls" }, [back, next, title]), panels, note);

    const state = { step: 0, maps: null, pixels: null };
    const ready = (async () => {
      const bank = await core.bank(root);
      const sessions = await core.sessions(root);
      const net = bank.nets[bank.nets.length - 1]; // the finest: the most steps
      return { bank, net, session: sessions[net.name], steps: stepsOf(net.outputs) };
    })();

    async function use(pixels) {
      const live = await ready;
      const output = await core.serially(() =>
        live.session.run({ [live.bank.input]: core.inputTensor(pixels) }));
      const classes = live.bank.classes.length;
      const maps = {};
      for (const name of live.net.outputs) {
        const [, , h, w] = output[name].dims;
        maps[name] = { size: [h, w], labels: core.argmax(output[name].data, classes, h * w) };
      }
      Object.assign(state, { maps, pixels });
      return step(state.step);
    }

    async function step(n) {
      const live = await ready;
      if (!(n >= 0 && n < live.steps.length)) throw new Error(`no step ${n}: 0 to ${live.steps.length - 1}`);
      state.step = n;
      const current = live.steps[n];
      const shown = current.maps.map((name) =>
        core.labelPanel(live.bank, CAPTIONS[name] || name, state.maps[name].labels, state.maps[name].size));
      panels.replaceChildren(...shown);
      let changed = null;
      if (current.fuse) {
        const up = state.maps[current.up], fuse = state.maps[current.fuse];
        const [h, w] = fuse.size, uw = up.size[1];
        let count = 0;
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) count += up.labels[y * uw + x] !== fuse.labels[y * w + x];
        changed = count / (h * w);
        note.textContent = `The skip changed ${(100 * changed).toFixed(1)} % of the ` +
          `${h} x ${w} labels of the upsampled coarser scores.`;
      } else {
        note.textContent = n === 0
          ? "One label per 32 x 32 pixels: all the stride-32 layer can say."
          : "The finest fused scores, upsampled 8x by the net's last (bilinear) layer.";
      }
      title.textContent = `Step ${n + 1} of ${live.steps.length}: ${current.title}`;
      back.disabled = n === 0;
      next.disabled = n === live.steps.length - 1;
      return { step: n, net: live.net.name, changed, maps: Object.fromEntries(current.maps.map((name) =>
        [name, { size: state.maps[name].size, labels: Array.from(state.maps[name].labels) }])) };
    }

    back.addEventListener("click", () => step(state.step - 1).catch(console.error));
    next.addEventListener("click", () => step(state.step + 1).catch(console.error));
    document.addEventListener("fcn-live-scene", (event) => {
      use(event.detail.pixels).catch(console.error);
    });
    const shown = ready.then(async (live) => {
      if (!state.maps) await use(await core.pngPixels(live.bank.scenes[0].image));
      return live;
    });
    const api = {
      ready: shown.then((live) => { api.steps = live.steps.length; }),
      step: async (n) => { await shown; return step(n); }, // the scene's maps first
      use,
    };
    shown.catch((error) => {
        console.error(error);
        core.fallback(root, node, `The net could not run here (${error.message}). Here are ` +
          "its fusion's stages on one scene, computed with PyTorch:", "fusion-fallback.png",
        "A lab scene and the labels of FCN-8s's fused scores and output, computed with PyTorch");
      });
    return api;
  }

  const mounted = core.containers("fusion").map(mount);
  if (mounted[0]) window.fcnFusion = mounted[0];
})();
