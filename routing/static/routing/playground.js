// The playground: streams a completion over /ws/stream/ and follows requests over
// /ws/requests/. Plain browser JavaScript, no build step and no CDN.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const workloads = JSON.parse($("workloads-data").textContent);
  const recent = JSON.parse($("recent-data").textContent);
  const rates = JSON.parse($("rates-data").textContent); // model -> standard $/Mtok
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";

  // --- money and numbers ------------------------------------------------------------
  // Costs arrive as decimal strings ("0.000123450000"); they are shown, never summed as floats.
  function usd(value) {
    if (value === null || value === undefined || value === "") return "–";
    let [whole, frac = ""] = String(value).split(".");
    frac = frac.replace(/0+$/, "");
    if (frac.length < 2) frac = frac.padEnd(2, "0");
    return `$${whole}.${frac}`;
  }
  function approxUsd(amount) {
    // A running estimate while tokens arrive (a float is fine for a display-only guess).
    return `≈ $${amount.toPrecision(3)}`;
  }
  const when = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");

  // --- pickers ------------------------------------------------------------------------
  const workloadSelect = $("workload");
  const modelSelect = $("model");
  function selectedWorkload() {
    const [team, slug] = workloadSelect.value.split("/");
    return workloads.find((w) => w.team === team && w.slug === slug);
  }
  function fillModels() {
    const w = selectedWorkload();
    modelSelect.replaceChildren(new Option("the policy decides", ""));
    for (const m of w.models) modelSelect.add(new Option(m, m));
    $("workload-help").textContent =
      `${w.description} (${w.latency_class.replace("_", " ")}` +
      (w.deferrable ? ": deferred to a provider batch at half price)" : ": answered now)");
  }
  workloadSelect.addEventListener("change", fillModels);
  // Start on a workload answered now: that is what a playground is for.
  const live = workloads.find((w) => !w.deferrable);
  if (live) workloadSelect.value = `${live.team}/${live.slug}`;
  fillModels();

  // --- a socket that comes back -------------------------------------------------------
  function socket(path, onMessage, onOpen) {
    let ws;
    let delay = 500;
    const state = { send: (msg) => ws && ws.readyState === 1 && ws.send(JSON.stringify(msg)) };
    function open() {
      ws = new WebSocket(`${scheme}//${location.host}${path}`);
      ws.onopen = () => {
        delay = 500;
        onOpen && onOpen(state);
      };
      ws.onmessage = (event) => onMessage(JSON.parse(event.data));
      ws.onclose = () => {
        state.onclose && state.onclose();
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
    return state;
  }

  // --- the answer panel ---------------------------------------------------------------
  const output = $("output");
  let current = null; // {id, started, first, chars, rates, promptTokens}

  function setStatus(text) {
    $("status").textContent = text;
  }
  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  }
  function busy(on) {
    $("send").disabled = on;
    $("stop").disabled = !on;
  }
  function runningCounters() {
    if (!current || current.first === null) return;
    const outTokens = Math.max(1, Math.round(current.chars / 4));
    const seconds = Math.max((performance.now() - current.first) / 1000, 0.001);
    $("tps").textContent = `≈ ${(outTokens / seconds).toFixed(1)}`;
    if (current.rates) {
      const cost =
        (current.promptTokens * Number(current.rates.input_per_mtok) +
          outTokens * Number(current.rates.output_per_mtok)) /
        1e6;
      $("cost").textContent = approxUsd(cost);
    }
  }
  function finish(msg, label) {
    setStatus(label);
    $("answer-model").textContent = msg.model ? `${msg.model} (${msg.provider})` : "–";
    if (msg.ttft_ms !== undefined && msg.ttft_ms !== null) $("ttft").textContent = `${msg.ttft_ms} ms`;
    if (msg.tokens_per_s !== undefined) {
      $("tps").textContent = msg.tokens_per_s === null ? "–" : msg.tokens_per_s.toFixed(1);
    }
    if (msg.mode === "cache") setStatus(`${label} (cache hit)`);
    $("cost").textContent = usd(msg.cost_usd) + (msg.estimated ? " (estimate)" : "");
    $("cost").dataset.final = "1";
    busy(false);
    current = null;
  }

  const stream = socket("/ws/stream/", (msg) => {
    switch (msg.type) {
      case "started":
        current.id = msg.request_id;
        current.rates = msg.mode === "cache" ? null : rates[msg.model] || null;
        setStatus(`streaming (${msg.mode})`);
        $("answer-model").textContent = msg.model ? `${msg.model} (${msg.provider})` : "–";
        follow(msg.request_id);
        break;
      case "delta":
        if (current.first === null) {
          current.first = performance.now();
          $("ttft").textContent = `${Math.round(current.first - current.started)} ms`;
        }
        current.chars += msg.text.length;
        output.append(document.createTextNode(msg.text));
        runningCounters();
        break;
      case "done":
        finish(msg, "completed");
        break;
      case "stopped":
        finish(msg, "stopped");
        break;
      case "queued":
        setStatus("queued");
        $("ticket").hidden = false;
        $("ticket-id").textContent = msg.request_id;
        $("ticket-deadline").textContent = msg.deadline ? new Date(msg.deadline).toLocaleString() : "–";
        $("cost").textContent = "billed when the batch result arrives";
        waitingTicket = msg.request_id;
        follow(msg.request_id);
        busy(false);
        current = null;
        break;
      case "error":
        showError(msg.message);
        if (msg.request_id) finish(msg, msg.status || "failed");
        else if (current) {
          setStatus("refused");
          busy(false);
          current = null;
        }
        break;
    }
  }, () => ($("connection").textContent = "connected"));
  stream.onclose = () => {
    $("connection").textContent = "reconnecting…";
    if (current) {
      setStatus("connection lost");
      busy(false);
      current = null;
    }
  };

  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const w = selectedWorkload();
    const prompt = $("prompt").value.trim();
    if (!prompt) return;
    const message = {
      type: "start",
      team: w.team,
      workload: w.slug,
      messages: [{ role: "user", content: prompt }],
      max_tokens: Number($("max_tokens").value),
    };
    if (modelSelect.value) message.model = modelSelect.value;
    output.replaceChildren();
    showError("");
    $("ticket").hidden = true;
    for (const id of ["ttft", "tps", "cost", "answer-model"]) $(id).textContent = "–";
    delete $("cost").dataset.final;
    setStatus("sending…");
    current = { id: null, started: performance.now(), first: null, chars: 0, rates: null,
                promptTokens: Math.ceil(prompt.length / 4) + 8 };
    busy(true);
    stream.send(message);
  });
  $("stop").addEventListener("click", () => stream.send({ type: "stop" }));

  // --- recent requests, kept current by /ws/requests/ ---------------------------------
  const rows = new Map();
  let waitingTicket = null;
  const tbody = $("recent").querySelector("tbody");

  function renderRow(r) {
    let tr = rows.get(r.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = r.id;
      rows.set(r.id, tr);
      tbody.prepend(tr);
      $("recent-empty").hidden = true;
    }
    const cells = [when(r.created_at), r.workload, r.mode || "–", r.status, r.model || "–", usd(r.cost_usd)];
    tr.replaceChildren(...cells.map((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 5) td.className = "num";
      if (i === 3) td.className = `status status-${r.status}`;
      return td;
    }));
  }
  recent.slice().reverse().forEach(renderRow);

  const requests = socket("/ws/requests/", (msg) => {
    if (msg.type !== "status") return;
    const r = msg.request;
    renderRow(r);
    if (r.id === waitingTicket && ["completed", "failed", "cancelled"].includes(r.status)) {
      waitingTicket = null;
      $("ticket").hidden = true;
      output.replaceChildren(document.createTextNode(r.output));
      setStatus(r.status);
      $("answer-model").textContent = r.model ? `${r.model} (${r.provider})` : "–";
      $("cost").textContent = usd(r.cost_usd);
      if (r.error) showError(r.error);
    }
  }, (state) => {
    const ids = [...rows.keys()];
    if (ids.length) state.send({ type: "subscribe", request_ids: ids });
  });
  function follow(id) {
    requests.send({ type: "subscribe", request_ids: [id] });
  }
})();
