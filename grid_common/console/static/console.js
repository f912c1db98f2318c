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

// One panel per metric family (loss, accuracy), epochs on x; drawn from epoch progress points.
function drawChart(container, history) {
  container.replaceChildren();
  if (!history.length) {
    container.textContent = "No finished epoch yet.";
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
      "aria-label": `${keys[0]} per epoch`,
    }, container);
    const values = history.flatMap((p) => keys.map((k) => p[k])).filter((v) => typeof v === "number");
    let low = Math.min(...values);
    let high = Math.max(...values);
    if (low === high) { low -= 0.5; high += 0.5; }
    const epochs = history.map((p) => p.epoch);
    const first = Math.min(...epochs);
    const last = Math.max(...epochs);
    const x = (e) => pad.left + ((e - first) / Math.max(last - first, 1)) * (width - pad.left - pad.right);
    const y = (v) => height - pad.bottom - ((v - low) / (high - low)) * (height - pad.top - pad.bottom);
    for (let i = 0; i <= 4; i += 1) {
      const value = low + ((high - low) * i) / 4;
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: "grid-line" }, chart);
      svg("text", { x: pad.left - 4, y: y(value) + 4, "text-anchor": "end" }, chart).textContent = value.toPrecision(3);
    }
    svg("line", { x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom, class: "axis" }, chart);
    svg("line", { x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom, class: "axis" }, chart);
    svg("text", { x: pad.left, y: height - 8 }, chart).textContent = `epoch ${first}`;
    svg("text", { x: width - pad.right, y: height - 8, "text-anchor": "end" }, chart).textContent = `${last}`;
    svg("text", { x: (width + pad.left) / 2, y: height - 8, "text-anchor": "middle" }, chart).textContent = keys[0];
    keys.forEach((key) => {
      const points = history.filter((p) => typeof p[key] === "number").map((p) => `${x(p.epoch)},${y(p[key])}`);
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
    drawChart(chart, epochHistory(events));
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

document.addEventListener("DOMContentLoaded", () => {
  confirmButtons();
  uploadForms();
  document.querySelectorAll("[data-progress-url]").forEach(liveJob);
});
