// dream console: live counters and job progress, by server-sent events. Served from the console itself (the
// Content-Security-Policy allows no inline script and no other origin); the pages work without it.
"use strict";

function showLive(figures) {
  for (const element of document.querySelectorAll("[data-live]")) {
    const value = figures[element.dataset.live];
    if (value !== undefined) {
      element.textContent = value === null ? "-" : Number(value).toLocaleString("en-US");
    }
  }
}

function followJob(box) {
  const phase = document.getElementById("job-phase");
  const count = document.getElementById("job-count");
  const bar = document.getElementById("job-bar");
  const source = new EventSource(box.dataset.progress);
  source.onmessage = (event) => {
    const job = JSON.parse(event.data);
    phase.textContent = job.phase || "done";
    const done = Number(job.done || 0);
    count.textContent = job.total ? `${done.toLocaleString("en-US")} of ${Number(job.total).toLocaleString("en-US")}` : done.toLocaleString("en-US");
    if (job.total && done > 0) {
      bar.max = job.total;
      bar.value = done;
    } else {
      bar.removeAttribute("value"); // indeterminate: SQL is reading, the count comes at the end
    }
    if (job.finished) {
      source.close();
      window.location.assign(box.dataset.done);
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.querySelector("[data-live]")) {
    const live = new EventSource("/live");
    live.onmessage = (event) => showLive(JSON.parse(event.data));
  }
  const box = document.getElementById("job");
  if (box) {
    followJob(box);
  }
});
