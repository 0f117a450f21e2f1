// The playground: streams a completion over /ws/stream/ (or through OpenAI's Responses API,
// as an application would call it) and follows requests over /ws/requests/. Plain browser
// JavaScript, no build step and no CDN.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const workloads = JSON.parse($("workloads-data").textContent);
  const recent = JSON.parse($("recent-data").textContent);
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
    // A running figure while tokens arrive (a float is fine for display only), cut (not
    // rounded) to three significant digits: rounding up could show more than is billed.
    if (!(amount > 0)) return "≈ $0.00";
    const exponent = Math.floor(Math.log10(amount)) - 2;
    const cut = Math.floor(amount / 10 ** exponent) * 10 ** exponent;
    return `≈ $${cut.toFixed(Math.max(2, -exponent))}`;
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
      ws.onclose = (event) => {
        state.onclose && state.onclose(event);
        // After a 4401 (the session ended) a retry is refused unless the browser has a new
        // session cookie (a password change moves the session to a new key): keep trying.
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
    return state;
  }

  // --- the answer panel ---------------------------------------------------------------
  const output = $("output");
  // The streaming request: {id, started, first, deltas, words, inWord, firstTokens, prices}.
  let current = null;

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
  // Tokens so far, never more than the provider counts: a delta carries at least one token,
  // and so does each whitespace-separated word (tokenizers split at whitespace before
  // merging). Characters are no measure: tokens run from 1 to 10+ characters.
  function tokensSoFar() {
    return Math.max(current.deltas, current.words);
  }
  function countWords(text) {
    const words = text.match(/\S+/g) || [];
    let count = words.length;
    if (count && current.inWord && /^\S/.test(text)) count -= 1; // a word split across deltas
    if (text) current.inWord = /\S$/.test(text);
    return count;
  }
  // The same figures the server sends in `done` (routing/consumers.py): tokens/s is the
  // tokens after the first delta over the time from the first delta to the latest, and the
  // cost prices what has arrived with the `started` message's floor prices.
  function runningCounters(now) {
    const tokens = tokensSoFar();
    const seconds = (now - current.first) / 1000;
    // Over a fifth of a second at least: two deltas read in one burst are no rate.
    if (current.deltas >= 2 && seconds >= 0.2) {
      $("tps").textContent = `≈ ${((tokens - current.firstTokens) / seconds).toFixed(1)}`;
    }
    if (current.prices) {
      $("cost").textContent = approxUsd(
        current.prices.prompt + (tokens * current.prices.outputPerMtok) / 1e6,
      );
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
        // Null when llmops has no price for the model: no running cost then.
        current.prices = msg.output_usd_per_mtok == null ? null : {
          prompt: Number(msg.prompt_cost_floor_usd),
          outputPerMtok: Number(msg.output_usd_per_mtok),
        };
        setStatus(`streaming (${msg.mode})`);
        $("answer-model").textContent = msg.model ? `${msg.model} (${msg.provider})` : "–";
        follow(msg.request_id);
        break;
      case "delta": {
        const now = performance.now();
        current.deltas += 1;
        current.words += countWords(msg.text);
        if (current.first === null) {
          current.first = now;
          current.firstTokens = tokensSoFar();
          $("ttft").textContent = `${Math.round(now - current.started)} ms`;
        }
        output.append(document.createTextNode(msg.text));
        runningCounters(now);
        break;
      }
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
  stream.onclose = (event) => {
    $("connection").textContent =
      event.code === 4401 ? "signed out: reload the page to sign in" : "reconnecting…";
    if (current) {
      setStatus("connection lost");
      busy(false);
      current = null;
    }
  };

  // --- through the Responses API -------------------------------------------------------
  const via = $("via");
  const keyInput = $("api_key");
  keyInput.value = sessionStorage.getItem("llmops-playground-key") || "";
  function showVia() {
    const responses = via.value === "responses";
    $("key-field").hidden = !responses;
    $("via-help").hidden = !responses;
    keyInput.required = responses;
  }
  via.addEventListener("change", showVia);
  showVia();
  let aborter = null;

  // Server-sent events out of a fetch body: each complete event's `data` parsed.
  async function* sseEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replaceAll("\r\n", "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer.slice(0, end).split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart()).join("\n");
        buffer = buffer.slice(end + 2);
        if (data) yield JSON.parse(data);
      }
    }
  }

  async function viaResponses(w, prompt) {
    const key = keyInput.value.trim();
    sessionStorage.setItem("llmops-playground-key", key);
    aborter = new AbortController();
    let answer;
    try {
      answer = await fetch("/v1/responses", {
        method: "POST",
        signal: aborter.signal,
        headers: {
          "Authorization": `Bearer ${key}`,
          "X-Workload": w.slug,
          "Content-Type": "application/json",
        },
        body: JSON.stringify({
          // The model picked, else the policy's primary: its chain with the fallbacks.
          model: modelSelect.value || w.models[0],
          input: prompt,
          max_output_tokens: Number($("max_tokens").value),
          stream: true,
        }),
      });
    } catch (error) {
      showError(String(error));
      finish({}, "failed");
      return;
    }
    const requestId = answer.headers.get("x-request-id");
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      showError((body.error && body.error.message) || `HTTP ${answer.status}`);
      finish({}, "refused");
      return;
    }
    current.id = requestId;
    costOf.set(requestId, null);
    follow(requestId); // the ledger's cost arrives with the request's status
    setStatus("streaming (responses)");
    try {
      for await (const event of sseEvents(answer.body)) {
        if (event.type === "response.created") {
          $("answer-model").textContent = event.response.model;
        } else if (event.type === "response.output_text.delta") {
          const now = performance.now();
          current.deltas += 1;
          current.words += countWords(event.delta);
          if (current.first === null) {
            current.first = now;
            current.firstTokens = tokensSoFar();
            $("ttft").textContent = `${Math.round(now - current.started)} ms`;
          }
          output.append(document.createTextNode(event.delta));
          runningCounters(now);
        } else if (event.type === "response.completed" || event.type === "response.incomplete") {
          finish({ model: event.response.model, provider: "responses" }, "completed");
          // The ledger entry is written before this event leaves: its status push may be here.
          const billed = costOf.get(requestId);
          if (billed) showBilled(billed);
          else {
            $("cost").textContent = "…";
            delete $("cost").dataset.final;
          }
        } else if (event.type === "response.failed" || event.type === "error") {
          const failure = event.response ? event.response.error : event;
          showError((failure && failure.message) || "The response failed.");
          finish({}, "failed");
        }
      }
    } catch (error) {
      if (error.name !== "AbortError") showError(String(error));
      if (current) finish({}, "stopped");
    }
    aborter = null;
  }
  // Requests answered through the Responses API: their completed record (model, provider,
  // cost from the ledger) once its status push came, else null.
  const costOf = new Map();
  function showBilled(r) {
    costOf.delete(r.id);
    $("answer-model").textContent = r.model ? `${r.model} (${r.provider})` : "–";
    $("cost").textContent = usd(r.cost_usd);
    $("cost").dataset.final = "1";
  }

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
    current = { id: null, started: performance.now(), first: null, deltas: 0, words: 0,
                inWord: false, firstTokens: 0, prices: null };
    busy(true);
    if (via.value === "responses") viaResponses(w, prompt);
    else stream.send(message);
  });
  $("stop").addEventListener("click", () => {
    // Through the Responses API, closing the response is the stop (llmops bills what came).
    if (aborter) aborter.abort();
    else stream.send({ type: "stop" });
  });

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
    if (costOf.has(r.id) && r.status === "completed") {
      // Still streaming: shown when the stream ends; else now.
      if (current && current.id === r.id) costOf.set(r.id, r);
      else showBilled(r);
    }
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
