// The validator screen: renders each state the server sends, and the keypad.
"use strict";

const $ = (id) => document.getElementById(id);
let idleMs = 20000;
let keypadTimer = null;
let entry = { code: "", tckn: "", field: "code" };

function ageText(seconds) {
  if (seconds === null) return "liste yok · no list";
  if (seconds < 120) return `liste ${seconds} sn · list ${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 120) return `liste ${minutes} dk · list ${minutes} min`;
  const hours = Math.round(minutes / 60);
  return `liste ${hours} sa · list ${hours} h`;
}

function pill(el, text, kind) {
  el.textContent = text;
  el.className = "pill " + kind;
}

function render(state) {
  idleMs = state.idle_s * 1000;
  pill($("link"), state.online ? "çevrimiçi · online" : "çevrimdışı · offline",
       state.online ? "good" : "bad");
  pill($("list"), ageText(state.list_age_s), state.list_stale ? "bad" : "good");
  pill($("backlog"), `bekleyen · queued ${state.backlog}`, state.storage_error ? "bad" : "");
  const warnings = $("warnings");
  warnings.replaceChildren(...state.warnings.map((w) => {
    const div = document.createElement("div");
    div.className = w.colour;
    div.textContent = `${w.tr} · ${w.en}`;
    return div;
  }));
  const last = state.last_decision;
  const showAnswer = state.view === "answer" && last !== null;
  $("start-view").hidden = showAnswer;
  $("answer-view").hidden = !showAnswer;
  $("panel").className = showAnswer ? last.colour : "start";
  if (showAnswer) {
    $("answer-tr").textContent = last.tr;
    $("answer-en").textContent = last.en;
    const seq = last.seq === null ? "kaydedilemedi · not recorded" : `#${last.seq}`;
    $("answer-meta").textContent = `${last.reason} · ${seq}`;
    closeKeypad();
  }
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("state", (event) => render(JSON.parse(event.data)));
  source.onerror = () => {
    pill($("link"), "ekran bağlantısı yok · screen link lost", "bad");
  };
}

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString("tr-TR", { hour: "2-digit", minute: "2-digit" });
}

function formatCode(code) {
  return [code.slice(0, 4), code.slice(4, 8), code.slice(8)].filter((p) => p).join("-");
}

function renderEntry() {
  $("code-field").textContent = formatCode(entry.code);
  $("tckn-field").textContent = entry.tckn;
  $("code-field").classList.toggle("active", entry.field === "code");
  $("tckn-field").classList.toggle("active", entry.field === "tckn");
}

function touchKeypad() {
  clearTimeout(keypadTimer);
  keypadTimer = setTimeout(closeKeypad, idleMs);
}

function openKeypad() {
  entry = { code: "", tckn: "", field: "code" };
  $("keypad-error").textContent = "";
  renderEntry();
  $("keypad").hidden = false;
  touchKeypad();
}

function closeKeypad() {
  clearTimeout(keypadTimer);
  $("keypad").hidden = true;
}

function press(key) {
  touchKeypad();
  if (entry.field === "code" && entry.code.length < 10) {
    entry.code += key;
    if (entry.code.length === 10) entry.field = "tckn";
  } else if (entry.field === "tckn" && entry.tckn.length < 3 && /[0-9]/.test(key)) {
    entry.tckn += key;
  }
  renderEntry();
}

function back() {
  touchKeypad();
  if (entry.field === "tckn" && entry.tckn === "") entry.field = "code";
  if (entry.field === "tckn") entry.tckn = entry.tckn.slice(0, -1);
  else entry.code = entry.code.slice(0, -1);
  renderEntry();
}

async function submit() {
  touchKeypad();
  $("keypad-error").textContent = "";
  try {
    const response = await fetch("/api/keypad", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code: entry.code, tckn_last3: entry.tckn }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    renderAnswerNow(await response.json());
  } catch (err) {
    $("keypad-error").textContent = `Gönderilemedi · Could not send (${err.message})`;
  }
}

// The server's state event follows; showing the answer at once saves a round trip.
function renderAnswerNow(answer) {
  $("start-view").hidden = true;
  $("answer-view").hidden = false;
  $("panel").className = answer.colour;
  $("answer-tr").textContent = answer.tr;
  $("answer-en").textContent = answer.en;
  closeKeypad();
}

function buildKeys() {
  const keys = $("keys");
  for (const key of "1234567890QWERTYUIOPASDFGHJKLZXCVBNM") {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = key;
    button.addEventListener("click", () => press(key));
    keys.appendChild(button);
  }
  $("key-back").addEventListener("click", back);
  $("key-cancel").addEventListener("click", closeKeypad);
  $("key-ok").addEventListener("click", submit);
  $("open-keypad").addEventListener("click", openKeypad);
  $("code-field").addEventListener("click", () => { entry.field = "code"; renderEntry(); });
  $("tckn-field").addEventListener("click", () => { entry.field = "tckn"; renderEntry(); });
}

buildKeys();
tick();
setInterval(tick, 10000);
connect();
