// Grid consoles: the little the pages need beyond HTML. Every page works without it, except
// for the live parts (upload progress, job progress and its chart).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const SERIES = ["loss", "val_loss", "accuracy", "val_accuracy"];

function confirmButtons() {
  document.querySelectorAll("button[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
}

// Uploads go through XMLHttpRequest for its progress events; the server answers as it does
// to the plain form (a redirect to the dataset, or back to the form with the reason).
function uploadForms() {
  document.querySelectorAll("form[data-upload]").forEach((form) => {
    const bar = form.querySelector("progress");
    const status = form.querySelector("[data-upload-status]");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        bar.max = e.total;
        bar.value = e.loaded;
        status.textContent = `Uploading: ${Math.round((100 * e.loaded) / e.total)}%`;
      });
      xhr.upload.addEventListener("load", () => {
        status.textContent = "Uploaded; checking the file…";
      });
      xhr.addEventListener("load", () => {
        if (xhr.status < 400) {
          window.location.assign(xhr.responseURL);
          return;
        }
        const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
        const message = page.querySelector(".message, .flash.error");
        status.textContent = `Upload refused (${xhr.status}): ${message ? message.textContent : ""}`;
      });
      xhr.addEventListener("error", () => {
        status.textContent = "The upload failed: the connection to the domain broke.";
      });
      bar.hidden = false;
      form.querySelector("button[type=submit]").disabled = true;
      xhr.send(new FormData(form));
    });
  });
}

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  Object.entries(attributes).forEach(([key, value]) => element.setAttribute(key, value));
  parent.appendChild(element);
  return element;
}

// One panel per metric family (loss, accuracy), with `axis` (epoch, round) on x: each point of
// `history` holds that key and the metrics measured there.
function drawChart(container, history, axis = "epoch") {
  container.replaceChildren();
  if (!history.length) {
    container.textContent = `No finished ${axis} yet.`;
    return;
  }
  const families = [["loss", "val_loss"], ["accuracy", "val_accuracy"]].filter((keys) =>
    history.some((point) => point[keys[0]] !== undefined));
  const width = 320;
  const height = 200;
  const pad = { left: 44, right: 10, top: 12, bottom: 28 };
  families.forEach((keys) => {
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
      "aria-label": `${keys[0]} per ${axis}`,
    }, container);
    const values = history.flatMap((p) => keys.map((k) => p[k])).filter((v) => typeof v === "number");
    let low = Math.min(...values);
    let high = Math.max(...values);
    if (low === high) { low -= 0.5; high += 0.5; }
    const steps = history.map((p) => p[axis]);
    const first = Math.min(...steps);
    const last = Math.max(...steps);
    const x = (e) => pad.left + ((e - first) / Math.max(last - first, 1)) * (width - pad.left - pad.right);
    const y = (v) => height - pad.bottom - ((v - low) / (high - low)) * (height - pad.top - pad.bottom);
    for (let i = 0; i <= 4; i += 1) {
      const value = low + ((high - low) * i) / 4;
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: "grid-line" }, chart);
      svg("text", { x: pad.left - 4, y: y(value) + 4, "text-anchor": "end" }, chart).textContent = value.toPrecision(3);
    }
    svg("line", { x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom, class: "axis" }, chart);
    svg("line", { x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom, class: "axis" }, chart);
    svg("text", { x: pad.left, y: height - 8 }, chart).textContent = `${axis} ${first}`;
    svg("text", { x: width - pad.right, y: height - 8, "text-anchor": "end" }, chart).textContent = `${last}`;
    svg("text", { x: (width + pad.left) / 2, y: height - 8, "text-anchor": "middle" }, chart).textContent = keys[0];
    keys.forEach((key) => {
      const points = history.filter((p) => typeof p[key] === "number").map((p) => `${x(p[axis])},${y(p[key])}`);
      if (points.length) svg("polyline", { points: points.join(" "), class: `series-${key}` }, chart);
    });
  });
}

function epochHistory(events) {
  const attempt = Math.max(0, ...events.map((e) => e.attempt));
  return events
    .filter((e) => e.kind === "progress" && e.attempt === attempt && e.data.phase === "epoch")
    .map((e) => e.data);
}

function appendLogs(list, events) {
  events.filter((e) => e.kind === "log").forEach((e) => {
    const item = document.createElement("li");
    item.className = e.data.level || "info";
    item.textContent = `${e.at.slice(11, 19)}  ${e.data.message}`;
    list.appendChild(item);
  });
  list.scrollTop = list.scrollHeight;
}

// Polls the job's progress; reloads the page when the job or its result changes state, so
// the buttons the server renders always match it.
function liveJob(root) {
  const url = root.dataset.progressUrl;
  const chart = root.querySelector("[data-chart]");
  const logs = root.querySelector("[data-logs]");
  const bar = root.querySelector("[data-epoch-bar]");
  const label = root.querySelector("[data-epoch-label]");
  const state = `${root.dataset.status}/${root.dataset.resultStatus}`;
  const events = JSON.parse(document.getElementById("job-events").textContent);
  let after = events.reduce((max, e) => Math.max(max, e.id), 0);
  const show = () => {
    const progress = events.filter((e) => e.kind === "progress");
    const latest = progress.length ? progress[progress.length - 1].data : null;
    if (latest && latest.epochs) {
      bar.max = latest.epochs;
      bar.value = latest.phase === "epoch" ? latest.epoch : latest.epoch - 1 + latest.step / latest.steps_per_epoch;
      label.textContent = `epoch ${latest.epoch} of ${latest.epochs}` +
        (typeof latest.loss === "number" ? `, loss ${latest.loss.toFixed(4)}` : "");
    }
    // An analysis's page has no chart: it has no epochs.
    if (chart) drawChart(chart, epochHistory(events));
  };
  appendLogs(logs, events);
  show();
  if (root.dataset.finished === "true") return;
  const poll = async () => {
    try {
      const response = await fetch(`${url}?after=${after}`, { headers: { Accept: "application/json" } });
      if (!response.ok || !response.headers.get("content-type").includes("json")) {
        window.location.reload();
        return;
      }
      const data = await response.json();
      if (data.events.length) {
        events.push(...data.events);
        after = data.events[data.events.length - 1].id;
        appendLogs(logs, data.events);
        show();
      }
      if (`${data.status}/${data.result_status}` !== state) {
        window.location.reload();
        return;
      }
    } catch (error) {
      // The domain may be restarting: try again on the next tick.
    }
    window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 1000);
}

function cell(row, text, className = "") {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function badgeIn(parent, status) {
  const badge = document.createElement("span");
  badge.className = `badge ${status}`;
  badge.textContent = status.replaceAll("_", " ");
  parent.replaceChildren(badge);
}

// As the server's `%.4g` and `when` filters write them.
const metric = (value) => (typeof value === "number" ? String(Number(value.toPrecision(4))) : "—");
const when = (iso) => (iso ? `${iso.replace("T", " ").slice(0, 19)} UTC` : "—");

// A federated job's page: the rounds table, the chart of weighted metrics per round and the
// domains' counts follow the job while it runs; a change of state reloads the page, so the
// buttons the server renders always match it.
function liveFederatedJob(root) {
  const url = root.dataset.flProgressUrl;
  const state = `${root.dataset.status}/${root.dataset.result}`;
  const show = (data) => {
    const bar = root.querySelector("[data-round-bar]");
    bar.max = data.rounds;
    bar.value = data.closed;
    root.querySelector("[data-round-label]").textContent = data.where;
    root.querySelectorAll("[data-participants] tr").forEach((row, i) => {
      const p = data.participants[i];
      if (!p) return;
      badgeIn(row.querySelector("[data-cell=status]"), p.status);
      row.querySelector("[data-cell=samples]").textContent = p.samples ?? "—";
      row.querySelector("[data-cell=rounds_reported]").textContent = p.rounds_reported;
      row.querySelector("[data-cell=attested]").textContent = p.attested ? "yes" : "no";
    });
    const body = root.querySelector("[data-rounds]");
    if (data.history.length) {
      body.replaceChildren(...data.history.map((r) => {
        const row = document.createElement("tr");
        cell(row, r.number, "num");
        badgeIn(cell(row, ""), r.status);
        cell(row, r.reporters.join(", ") || "—");
        cell(row, r.samples, "num");
        data.metrics.forEach((key) => cell(row, metric(r[key]), "num"));
        cell(row, when(r.closed_at));
        return row;
      }));
    }
    const chart = root.querySelector("[data-chart]");
    if (!chart) return; // an analysis: no metrics to draw
    const closed = data.history.filter((r) => r.status === "closed").map((r) => ({ ...r, round: r.number }));
    drawChart(chart, closed, "round");
  };
  show(JSON.parse(document.getElementById("fl-progress").textContent));
  if (root.dataset.finished === "true") return;
  const poll = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok || !response.headers.get("content-type").includes("json")) {
        window.location.reload();
        return;
      }
      const data = await response.json();
      if (`${data.status}/${data.result}` !== state) {
        window.location.reload();
        return;
      }
      show(data);
    } catch (error) {
      // The network may be restarting: try again on the next tick.
    }
    window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  confirmButtons();
  uploadForms();
  document.querySelectorAll("[data-progress-url]").forEach(liveJob);
  document.querySelectorAll("[data-fl-progress-url]").forEach(liveFederatedJob);
});
