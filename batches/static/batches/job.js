// Moves the job page's progress bar and counts by reading the job from the API while it runs.
(function () {
  "use strict";
  const panel = document.getElementById("job");
  if (!panel) return;
  const bar = document.getElementById("job-bar");
  const label = document.getElementById("job-progress");
  const statusEl = document.getElementById("job-status");
  const csrf = (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";
  let terminal = panel.dataset.terminal === "1";

  function show(job) {
    const pct = Math.round(job.progress * 1000) / 10;
    bar.style.width = pct + "%";
    bar.parentElement.setAttribute("aria-valuenow", String(pct));
    const c = job.counts;
    label.textContent = c.answered + " of " + c.total + " items answered (" + pct + "%) · provider: " +
      (job.provider_status || "not submitted yet");
    statusEl.textContent = job.status;
    statusEl.className = "status-" + job.status;
    for (const key of ["succeeded", "errored", "unfinished"]) {
      document.getElementById("c-" + key).textContent = c[key];
    }
    if (job.cost) {
      document.getElementById("c-cost").textContent = "$" + Number(job.cost.cost_usd).toFixed(6);
      const split = document.getElementById("c-cost-split");
      const elsewhere = Number(job.cost.elsewhere_cost_usd);
      split.textContent = "Its items cost $" + Number(job.cost.batch_cost_usd).toFixed(6) + " in this batch" +
        (elsewhere ? " and $" + elsewhere.toFixed(6) + " where they were served after it (realtime, or a later batch)" : "") +
        ". Realtime would have cost $" + Number(job.cost.counterfactual_cost_usd).toFixed(6) +
        " (saved $" + Number(job.cost.saved_usd).toFixed(6) + ").";
    }
    terminal = ["completed", "cancelled", "expired", "failed"].includes(job.status);
  }

  async function refresh() {
    try {
      const response = await fetch(panel.dataset.api, { headers: { Accept: "application/json" } });
      if (response.ok) show(await response.json());
    } catch (e) { /* offline for a moment: the next refresh tries again */ }
    if (!terminal) setTimeout(refresh, 2000);
  }

  const cancel = document.getElementById("job-cancel");
  if (cancel) {
    cancel.addEventListener("click", async function () {
      cancel.disabled = true;
      const response = await fetch(cancel.dataset.url, {
        method: "POST", headers: { "X-CSRFToken": decodeURIComponent(csrf), Accept: "application/json" },
      });
      if (response.ok || response.status === 409) show(await response.json());
      cancel.textContent = response.ok ? "Cancelling…" : "Already ended";
    });
  }
  refresh();
})();
