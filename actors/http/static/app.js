// The execd dashboard: reads the API with the token given in the page (kept in this tab's
// sessionStorage, never sent anywhere else), follows the event stream (/v1/events) to update live,
// and shows the kill switches to admins, each behind a confirmation.
"use strict";

const state = { token: sessionStorage.getItem("execd-token") || "", role: null, accounts: new Map(),
                fills: new Map(), socket: null, lastSeq: 0, refreshing: new Map() };
const $ = (selector) => document.querySelector(selector);

function api(path, options = {}) {
  const headers = { "content-type": "application/json", ...(options.headers || {}) };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  return fetch(path, { ...options, headers }).then(async (response) => {
    const body = await response.json().catch(() => null);
    if (!response.ok && response.status !== 422) {
      const error = body && body.error ? `${body.error.code}: ${body.error.message}` : response.statusText;
      throw new Error(`${response.status} ${error}`);
    }
    return body;
  });
}

function text(value) { return value === null || value === undefined ? "–" : String(value); }
function signed(value) {
  if (value === null || value === undefined) return "<td class=num>–</td>";
  const number = Number(value);
  return `<td class="num ${number > 0 ? "up" : number < 0 ? "down" : ""}">${value}</td>`;
}
function escape(value) {
  return text(value).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}
function say(message) { $("#status").textContent = message || ""; }

// ---------------------------------------------------------------- rendering

function renderAccounts() {
  const rows = [...state.accounts.values()].sort((a, b) => a.id.localeCompare(b.id)).map((a) => {
    const trading = a.effective_trading_state || a.trading_state || "–";
    return `<tr data-account="${escape(a.id)}">
      <td>${escape(a.id)}</td><td>${escape(a.mode)} / ${escape(a.venue)}</td>
      <td><span class="badge ${escape(a.actor && a.actor.state)}">${escape(a.actor && a.actor.state)}</span></td>
      <td><span class="badge trading-state ${escape(trading)}">${escape(trading)}</span></td>
      <td class=num>${escape(a.balance)}</td><td class=num>${escape(a.equity)}</td>
      ${signed(a.unrealized_pnl)}${signed(a.realized_pnl)}${signed(a.net_pnl)}
      <td class=num>${a.positions ? a.positions.length : "–"}</td>
      <td class="admin-only">
        <button data-action="halted">Halt</button> <button data-action="reducing">Reducing</button>
        <button data-action="active">Resume</button> <button data-action="close-all" class="danger">Close all</button>
      </td></tr>`;
  });
  $("#accounts tbody").innerHTML = rows.join("");
  const positions = [];
  for (const a of state.accounts.values()) {
    for (const p of a.positions || []) {
      positions.push(`<tr data-account="${escape(a.id)}" data-symbol="${escape(p.symbol)}">
        <td>${escape(a.id)}</td><td>${escape(p.symbol)}</td><td>${escape(p.side)}</td>
        <td class=num>${escape(p.quantity)}</td><td class=num>${escape(p.entry_price)}</td>
        <td class=num>${escape(p.mark_price)}</td>${signed(p.unrealized_pnl)}<td class=num>${escape(p.leverage)}x</td>
        <td class=num>${escape(p.take_profit)}</td><td class=num>${escape(p.stop_loss)}</td>
        <td class=num>${escape(p.liquidation_price)}</td></tr>`);
    }
  }
  $("#positions tbody").innerHTML = positions.join("") || `<tr><td colspan=11 class=muted>no open position</td></tr>`;
}

function renderFills() {
  const all = [...state.fills.values()].flat().sort((a, b) => b.ts - a.ts).slice(0, 30);
  $("#fills tbody").innerHTML = all.map((f) => `<tr data-fill="${escape(f.id)}">
    <td>${new Date(f.ts * 1000).toISOString().slice(11, 19)}</td><td>${escape(f.account_id)}</td>
    <td>${escape(f.symbol)}</td><td>${escape(f.side)}</td><td class=num>${escape(f.quantity)}</td>
    <td class=num>${escape(f.price)}</td><td class=num>${escape(f.fee)}</td>${signed(f.realized_pnl)}</tr>`).join("")
    || `<tr><td colspan=8>no fill yet</td></tr>`;
}

function addEvent(event) {
  const item = document.createElement("li");
  item.value = event.seq;
  item.dataset.type = event.type;
  const payload = event.payload || {};
  const detail = payload.decision_id || payload.order_id || payload.symbol || payload.to || "";
  item.textContent = `${new Date(event.ts * 1000).toISOString().slice(11, 23)} ${event.type} ` +
                     `${event.account_id || "(global)"} ${detail}`;
  const list = $("#events");
  list.prepend(item);
  while (list.children.length > 100) list.lastChild.remove();
}

// ---------------------------------------------------------------- loading

async function loadAccount(id) {
  const [inspection, trades] = await Promise.all([
    api(`/v1/accounts/${encodeURIComponent(id)}`),
    api(`/v1/accounts/${encodeURIComponent(id)}/trades?limit=20`)]);
  state.accounts.set(id, inspection);
  state.fills.set(id, trades.items.map((f) => ({ ...f, account_id: id })));
}

function refreshSoon(id) {  // several events of one commit: one refresh
  if (state.refreshing.has(id)) return;
  state.refreshing.set(id, setTimeout(async () => {
    state.refreshing.delete(id);
    try { await loadAccount(id); renderAccounts(); renderFills(); } catch (error) { say(error.message); }
  }, 100));
}

async function loadAll() {
  say("");
  try {
    const me = await api("/v1/whoami");
    state.role = me.role;
    $("#whoami").textContent = me.auth_enabled ? `${me.name} (${me.role})` : "no tokens configured: admin";
    document.body.classList.toggle("admin", me.role === "admin");
    const health = await fetch("/health").then((r) => r.json());
    showHealth(health);
    const list = await api("/v1/accounts");
    await Promise.all(list.items.map((a) => loadAccount(a.id)));
    renderAccounts();
    renderFills();
    connect();
  } catch (error) {
    say(error.message.startsWith("401") ? "an API token is required: enter it above" : error.message);
  }
}

function showHealth(health) {
  const badge = $("#global-state");
  badge.textContent = `global: ${health.global_trading_state}`;
  badge.className = `badge ${health.global_trading_state}`;
  $("#feeds").innerHTML = health.feeds.map((f) =>
    `<span class="badge ${escape(f.state)}" title="${escape(f.detail)}">${escape(f.venue)}: ${escape(f.state)}</span>`).join(" ");
}

// ---------------------------------------------------------------- the event stream

function connect() {
  if (state.socket) state.socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = state.lastSeq ? `after=${state.lastSeq}` : "tail=50";
  const protocols = ["execd"];
  if (state.token) {
    const encoded = btoa(unescape(encodeURIComponent(state.token))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    protocols.push(`bearer.${encoded}`);
  }
  const socket = new WebSocket(`${scheme}://${location.host}/v1/events?${query}`, protocols);
  state.socket = socket;
  socket.onopen = () => { $("#stream").textContent = "stream: live"; $("#stream").className = "badge on"; };
  socket.onclose = () => {
    if (state.socket !== socket) return;
    $("#stream").textContent = "stream: off"; $("#stream").className = "badge off";
    setTimeout(connect, 2000);  // resumes after the last event seen
  };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    state.lastSeq = Math.max(state.lastSeq, event.seq);
    addEvent(event);
    if (event.account_id && state.accounts.has(event.account_id)) refreshSoon(event.account_id);
    if (event.type === "account.created" && event.account_id && !state.accounts.has(event.account_id)) {
      loadAccount(event.account_id).then(() => { renderAccounts(); }).catch(() => {});
    }
    if (!event.account_id) fetch("/health").then((r) => r.json()).then(showHealth);
  };
}

// marks move without events: the open positions' unrealized PnL is refreshed every 2 s
setInterval(() => {
  for (const [id, account] of state.accounts) if (account.positions && account.positions.length) refreshSoon(id);
}, 2000);

// ---------------------------------------------------------------- kill switches (admin)

function confirmThen(message, action) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = message;
  dialog.onclose = async () => {
    if (dialog.returnValue !== "yes") return;
    try { await action(); } catch (error) { say(error.message); }
  };
  dialog.returnValue = "";
  dialog.showModal();
}

$("#accounts").addEventListener("click", (click) => {
  const button = click.target.closest("button[data-action]");
  if (!button) return;
  const id = button.closest("tr").dataset.account;
  const action = button.dataset.action;
  if (action === "close-all") {
    confirmThen(`Close every position and cancel every order of ${id}?`, async () => {
      await api(`/v1/accounts/${encodeURIComponent(id)}/close-all`, { method: "POST" });
      refreshSoon(id);
    });
  } else {
    confirmThen(`Set ${id} to ${action}?`, async () => {
      await api(`/v1/accounts/${encodeURIComponent(id)}/trading-state`,
                { method: "PUT", body: JSON.stringify({ state: action, reason: "dashboard" }) });
      refreshSoon(id);
    });
  }
});

document.querySelector(".global-actions").addEventListener("click", (click) => {
  const button = click.target.closest("button[data-global]");
  if (!button) return;
  const action = button.dataset.global;
  if (action === "close-all") {
    confirmThen("Close every position of every account?", () => api("/v1/close-all", { method: "POST" }));
  } else {
    confirmThen(`Set the global trading state to ${action}?`, () =>
      api("/v1/trading-state", { method: "PUT", body: JSON.stringify({ state: action, reason: "dashboard" }) }));
  }
});

$("#login").addEventListener("submit", (submit) => {
  submit.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("execd-token", state.token);
  $("#token").value = "";
  state.lastSeq = 0;
  $("#events").innerHTML = "";
  loadAll();
});

loadAll();
