// Renders /api/openapi.json as a browsable reference. Self-contained: no CDN.
(function () {
  "use strict";
  const el = (tag, attrs, ...kids) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    for (const k of kids) n.append(k);
    return n;
  };
  const resolve = (spec, s, depth) => {
    if (!s || depth > 6) return s;
    if (s.$ref) return resolve(spec, s.$ref.split("/").slice(1).reduce((o, p) => o && o[p], spec), depth + 1);
    const out = Array.isArray(s) ? [] : {};
    for (const [k, v] of Object.entries(s)) out[k] = typeof v === "object" && v !== null ? resolve(spec, v, depth + 1) : v;
    return out;
  };
  fetch("/api/openapi.json").then((r) => r.json()).then((spec) => {
    document.getElementById("ver").textContent = spec.info.title + " " + spec.info.version;
    const ops = document.getElementById("ops");
    const toc = document.getElementById("toc");
    ops.textContent = "";
    const byTag = {};
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const tag = (op.tags && op.tags[0]) || "Other";
        (byTag[tag] = byTag[tag] || []).push({ path, method, op });
      }
    }
    for (const tag of Object.keys(byTag).sort()) {
      toc.append(el("h2", {}, tag));
      for (const { path, method, op } of byTag[tag]) {
        const id = op.operationId || method + path;
        const link = el("a", { href: "#" + id, "data-text": (method + " " + path + " " + id).toLowerCase() }, method.toUpperCase() + " " + path);
        toc.append(link);
        const body = el("div", { class: "body" });
        if (op.description || op.summary) body.append(el("p", {}, op.description || op.summary));
        if (op.parameters && op.parameters.length) {
          const t = el("table", {}, el("tr", {}, el("th", {}, "Parameter"), el("th", {}, "In"), el("th", {}, "Description")));
          for (const p of op.parameters) t.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, p.description || "")));
          body.append(t);
        }
        const req = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
        if (req) body.append(el("p", {}, el("strong", {}, "Request body")), el("pre", {}, JSON.stringify(resolve(spec, req.schema, 0), null, 2)));
        for (const [status, resp] of Object.entries(op.responses || {})) {
          const content = resp.content && Object.values(resp.content)[0];
          body.append(el("p", {}, el("strong", {}, status), " " + (resp.description || "")));
          if (content && content.schema) body.append(el("pre", {}, JSON.stringify(resolve(spec, content.schema, 0), null, 2)));
        }
        ops.append(el("section", { class: "op", id }, el("header", {}, el("span", { class: "m " + method }, method), el("code", {}, path), el("span", { class: "muted" }, id)), body));
      }
    }
    document.getElementById("filter").addEventListener("input", (e) => {
      const q = e.target.value.toLowerCase();
      for (const a of toc.querySelectorAll("a")) a.style.display = a.dataset.text.includes(q) ? "" : "none";
    });
  }).catch((e) => { document.getElementById("ops").textContent = "Could not load the contract: " + e; });
})();
