/* The merchant dashboard: one page that calls the /v1 API with the session cookie and the CSRF header.
 * No secret key is ever kept in the page: signing in with a key sends it once to /dashboard/session,
 * which answers only the session's CSRF token (the cookie itself is HttpOnly). */
"use strict";

(function () {
  const BASE = location.pathname.replace(/\/dashboard\/?$/, "");
  const $ = (id) => document.getElementById(id);
  const state = { csrf: null, actor: null, charts: [], prices: null };

  // ------------------------------------------------------------------ helpers
  function esc(value) {
    return String(value === null || value === undefined ? "" : value).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  function digits(currency) {
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
    } catch (e) {
      return 2;
    }
  }

  // integer minor units → a decimal string (no floating point), then formatted for the browser's locale
  function decimal(minor, currency) {
    const d = digits(currency);
    const negative = minor < 0;
    let text = String(Math.abs(Math.trunc(minor)));
    if (d > 0) {
      text = text.padStart(d + 1, "0");
      text = text.slice(0, -d) + "." + text.slice(-d);
    }
    return (negative ? "-" : "") + text;
  }

  function money(minor, currency) {
    if (minor === null || minor === undefined || !currency) return "—";
    const code = currency.toUpperCase();
    return new Intl.NumberFormat(undefined, { style: "currency", currency: code }).format(decimal(minor, code));
  }

  // minor units from what a person types ("12.50" in EUR → 1250; "500" in JPY → 500); null when not a number
  function toMinor(text, currency) {
    const d = digits(currency.toUpperCase());
    const m = String(text).trim().match(/^(\d+)(?:[.,](\d*))?$/);
    if (!m || (m[2] || "").length > d) return null;
    return parseInt(m[1] + (m[2] || "").padEnd(d, "0"), 10);
  }

  function when(iso) {
    if (!iso) return "—";
    return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  }

  // an invoice is numbered when it is finalized (a checkout's first one when it is paid)
  function numberOf(invoice) {
    return invoice.number || (invoice.status === "draft" ? "draft" : "not numbered yet");
  }

  function badge(status) {
    return `<span class="badge ${esc(status)}">${esc(String(status).replace(/_/g, " "))}</span>`;
  }

  function toast(message, bad) {
    const el = $("toast");
    el.textContent = message;
    el.className = "toast" + (bad ? " bad" : "");
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
  }

  function uuid() {
    return crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2);
  }

  class ApiError extends Error {
    constructor(status, error) {
      super(error && error.message ? error.message : "HTTP " + status);
      this.status = status;
      this.error = error || {};
    }
  }

  async function call(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method === "POST" && path.startsWith("/v1/")) headers["Idempotency-Key"] = "dash-" + uuid();
    const response = await fetch(BASE + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let payload = null;
    try { payload = await response.json(); } catch (e) { payload = null; }
    if (response.status === 401 && path.startsWith("/v1/")) {
      showSignIn("Your session has ended: sign in again.");
    }
    if (!response.ok) throw new ApiError(response.status, payload && payload.error);
    return payload;
  }

  const get = (path) => call("GET", path);
  const post = (path, body) => call("POST", path, body === undefined ? {} : body);

  function query(params) {
    const parts = Object.entries(params)
      .filter(([, v]) => v !== undefined && v !== null && v !== "")
      .map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v));
    return parts.length ? "?" + parts.join("&") : "";
  }

  // ------------------------------------------------------------------ sign in / out
  let signInMode = "user";

  function showSignIn(message) {
    state.csrf = null;
    state.actor = null;
    $("app").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.hidden = !message;
    error.textContent = message || "";
  }

  function setMode(mode) {
    signInMode = mode;
    $("tab-user").classList.toggle("active", mode === "user");
    $("tab-key").classList.toggle("active", mode === "key");
    $("user-fields").hidden = mode !== "user";
    $("key-fields").hidden = mode !== "key";
  }

  async function signIn(event) {
    event.preventDefault();
    const body = signInMode === "key"
      ? { key: $("signin-key").value.trim() }
      : { email: $("signin-email").value.trim(), password: $("signin-password").value };
    $("signin-submit").disabled = true;
    try {
      const session = await call("POST", "/dashboard/session", body);
      $("signin-key").value = "";
      $("signin-password").value = "";
      started(session);
    } catch (error) {
      showSignIn(error.message);
    } finally {
      $("signin-submit").disabled = false;
    }
  }

  function started(session) {
    state.csrf = session.csrf_token;
    state.actor = session.actor;
    $("who-name").textContent = session.actor.email || (session.actor.type === "key" ? "API key " + session.actor.id : session.actor.id);
    $("who-role").textContent = session.actor.role === "full" ? "Full access" : "Read only";
    $("signin").hidden = true;
    $("app").hidden = false;
    route();
  }

  async function signOut() {
    try { await call("DELETE", "/dashboard/session"); } catch (e) { /* already ended */ }
    showSignIn("You have signed out.");
  }

  // ------------------------------------------------------------------ modal (every action is confirmed)
  function modal({ title, body, confirm, danger, secondary, onSecondary, onConfirm, onOpen }) {
    $("modal-title").textContent = title;
    $("modal-body").innerHTML = body;
    $("modal-error").hidden = true;
    const ok = $("modal-confirm");
    ok.textContent = confirm;
    ok.className = danger ? "primary danger-fill" : "primary";
    ok.disabled = false;
    ok.hidden = false;
    const second = $("modal-secondary");
    second.hidden = !secondary;
    second.textContent = secondary || "";
    $("modal").hidden = false;
    const fail = (error) => {
      $("modal-error").textContent = error.message + (error.error && error.error.param ? ` (${error.error.param})` : "");
      $("modal-error").hidden = false;
    };
    const run = (fn) => async () => {
      ok.disabled = true;
      second.disabled = true;
      $("modal-error").hidden = true;
      try {
        const done = await fn();
        if (done !== false) closeModal();
      } catch (error) {
        fail(error);
      } finally {
        ok.disabled = false;
        second.disabled = false;
      }
    };
    ok.onclick = run(onConfirm);
    second.onclick = onSecondary ? run(onSecondary) : null;
    if (onOpen) onOpen();
  }

  function closeModal() {
    $("modal").hidden = true;
    $("modal-body").innerHTML = "";
  }

  function readOnly() {
    return !state.actor || state.actor.role !== "full";
  }

  // ------------------------------------------------------------------ router
  const pages = {
    overview: overviewPage,
    customers: customersPage,
    subscriptions: subscriptionsPage,
    invoices: invoicesPage,
  };

  function route() {
    if (!state.csrf) return;
    const hash = location.hash.replace(/^#\/?/, "") || "overview";
    const [path, search] = hash.split("?");
    const [section, id] = path.split("/");
    const params = Object.fromEntries(new URLSearchParams(search || ""));
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === section));
    state.charts.forEach((chart) => chart.destroy());
    state.charts = [];
    // each visit renders into a fresh element: a page still loading when another is opened finds
    // itself detached (alive() throws STALE) and writes nothing more
    const main = document.createElement("div");
    $("main").replaceChildren(main);
    main.innerHTML = `<div class="muted">Loading…</div>`;
    const page = id ? details[section] : pages[section];
    if (!page) {
      main.innerHTML = `<div class="card empty">No such page.</div>`;
      return;
    }
    page(main, id || params, params).catch((error) => {
      if (error === STALE || !main.isConnected) return;
      if (error.status !== 401) main.innerHTML = `<div class="card error">${esc(error.message)}</div>`;
    });
  }

  const STALE = new Error("another page was opened");

  function alive(main) {
    if (!main.isConnected) throw STALE;
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  // ------------------------------------------------------------------ overview
  async function report(kind) {
    // the last twelve months up to the API's own today (the local stack's clock may be virtual)
    try {
      return await get(`/v1/reports/${kind}`);
    } catch (error) {
      if (error.status === 401 || error.status === 403) throw error;
      return { data: [], error };
    }
  }

  function percent(rate) {
    // a rate as the reports give it: a decimal string ("0.0512"); shown as 5.1%
    if (rate === null || rate === undefined) return "—";
    const m = String(rate).match(/^(-?)(\d+)(?:\.(\d+))?$/);
    if (!m) return "—";
    const digitsText = ((m[2] + ((m[3] || "") + "000").slice(0, 3)).replace(/^0+(?=\d)/, "")).padStart(2, "0");
    return `${m[1]}${digitsText.slice(0, -1)}.${digitsText.slice(-1)}%`;
  }

  async function overviewPage(main) {
    const [mrr, churn] = await Promise.all([report("mrr"), report("churn")]);
    alive(main);
    const rows = Array.isArray(mrr.data) ? mrr.data : [];
    const currency = (mrr.currency || "EUR").toUpperCase();
    const last = rows[rows.length - 1] || {};
    const previous = rows[rows.length - 2] || {};
    const churnRows = Array.isArray(churn.data) ? churn.data : [];
    const churnLast = churnRows[churnRows.length - 1] || {};
    const delta = (a, b) => {
      if (!b) return `<div class="delta muted">no earlier month</div>`;
      const change = (1000 * (a - b)) / Math.abs(b);
      const up = change >= 0;
      return `<div class="delta ${up ? "up" : "down"}">${up ? "▲" : "▼"} ${percent(String(Math.abs(Math.round(change)) / 1000))} vs last month</div>`;
    };
    const span = mrr.from && mrr.to ? `${esc(mrr.from)} to ${esc(mrr.to)}` : "the last twelve months";
    main.innerHTML = `
      <div class="page-head">
        <div><h1>Overview</h1><p class="sub">Subscription revenue, ${span}, in ${esc(currency)}</p></div>
      </div>
      ${mrr.error ? `<div class="card error">The MRR report could not be read: ${esc(mrr.error.message)}</div>` : ""}
      <div class="kpis">
        <div class="card kpi" id="kpi-mrr"><div class="label">MRR</div><div class="value">${money(last.mrr || 0, currency)}</div>${delta(last.mrr || 0, previous.mrr)}</div>
        <div class="card kpi" id="kpi-subscribers"><div class="label">Subscribers</div><div class="value">${esc(last.customers || 0)}</div>${delta(last.customers || 0, previous.customers)}</div>
        <div class="card kpi" id="kpi-churn"><div class="label">Logo churn, ${esc(last.month || "this month")}</div><div class="value">${percent(churnLast.logo_churn_rate)}</div><div class="delta muted">${money(last.churn || 0, currency)} MRR churned · revenue churn ${percent(churnLast.gross_revenue_churn_rate)}</div></div>
        <div class="card kpi" id="kpi-revenue"><div class="label">Revenue, ${esc(last.month || "this month")}</div><div class="value" id="revenue-value">…</div><div class="delta muted" id="revenue-note">paid invoices</div></div>
      </div>
      <div class="charts">
        <div class="card"><h3>MRR</h3><div class="chart-box"><canvas id="chart-mrr" aria-label="MRR over time"></canvas></div></div>
        <div class="card"><h3>Subscribers</h3><div class="chart-box"><canvas id="chart-subscribers" aria-label="Subscribers over time"></canvas></div></div>
        <div class="card wide"><h3>MRR movements</h3><div class="chart-box"><canvas id="chart-movements" aria-label="MRR movements per month"></canvas></div></div>
      </div>`;
    drawCharts(rows, currency);
    revenue(last.month).then(([text, note]) => {
      if (!main.isConnected) return;
      $("revenue-value").textContent = text;
      $("revenue-note").textContent = note;
    }).catch(() => { if (main.isConnected) $("revenue-value").textContent = "—"; });
  }

  async function revenue(month) {
    // what the invoices paid in the report's last month brought in, per currency (up to 10 pages of 100)
    const params = { status: "paid", limit: 100 };
    if (month) params["created[gte]"] = month + "-01";
    const sums = {};
    let after = null;
    let count = 0;
    for (let pageNo = 0; pageNo < 10; pageNo++) {
      const page = await get("/v1/invoices" + query({ ...params, starting_after: after }));
      page.data.forEach((inv) => {
        sums[inv.currency] = (sums[inv.currency] || 0) + (inv.amount_paid || 0);
        count++;
      });
      if (!page.has_more || !page.data.length) break;
      after = page.data[page.data.length - 1].id;
    }
    const entries = Object.entries(sums);
    if (!entries.length) return [money(0, "EUR"), "no paid invoices"];
    return [entries.map(([c, v]) => money(v, c)).join(" · "), `${count}${count >= 1000 ? "+" : ""} paid invoice${count === 1 ? "" : "s"}`];
  }

  function drawCharts(rows, currency) {
    if (!window.Chart) return;
    const labels = rows.map((r) => r.month);
    const major = (v) => Number(decimal(v || 0, currency.toUpperCase()));  // chart scale only, never stored
    const axisMoney = { ticks: { callback: (v) => new Intl.NumberFormat(undefined, { style: "currency", currency, maximumFractionDigits: 0 }).format(v) } };
    const base = { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } } };
    const line = (id, data, color, scale) => new window.Chart($(id), {
      type: "line",
      data: { labels, datasets: [{ data, borderColor: color, backgroundColor: color + "22", fill: true, cubicInterpolationMode: "monotone", pointRadius: 2 }] },
      options: { ...base, scales: { y: { beginAtZero: true, ...(scale || {}) } } },
    });
    state.charts.push(line("chart-mrr", rows.map((r) => major(r.mrr)), "#4f46e5", axisMoney));
    state.charts.push(line("chart-subscribers", rows.map((r) => r.customers || 0), "#0e9f6e", { ticks: { precision: 0 } }));
    const series = [
      ["New", "new", "#4f46e5", 1],
      ["Expansion", "expansion", "#0e9f6e", 1],
      ["Reactivation", "reactivation", "#06b6d4", 1],
      ["Contraction", "contraction", "#f59e0b", -1],
      ["Churn", "churn", "#e02424", -1],
    ];
    state.charts.push(new window.Chart($("chart-movements"), {
      type: "bar",
      data: {
        labels,
        datasets: series.map(([label, key, color, sign]) => ({
          label, data: rows.map((r) => sign * major(r[key])), backgroundColor: color, stack: "mrr",
        })),
      },
      options: {
        ...base,
        plugins: { legend: { display: true, position: "bottom" } },
        scales: { x: { stacked: true }, y: { stacked: true, ...axisMoney } },
      },
    }));
  }

  // ------------------------------------------------------------------ lists
  async function listTable(main, { title, sub, filters, path, params, columns, link, kind }) {
    alive(main);
    const shown = { ...params };
    delete shown.starting_after;
    delete shown.ending_before;
    main.innerHTML = `
      <div class="page-head"><div><h1>${esc(title)}</h1><p class="sub">${esc(sub)}</p></div></div>
      <form class="filters" id="filters">${filters}<button class="primary" type="submit">Apply</button></form>
      <div class="card table-card" id="list"><div class="empty">Loading…</div></div>`;
    const form = $("filters");
    Object.entries(shown).forEach(([k, v]) => { if (form.elements[k]) form.elements[k].value = v; });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = {};
      Array.from(form.elements).forEach((el) => { if (el.name && el.value) values[el.name] = el.value; });
      go(`#/${kind}` + query(values));
    });
    const page = await get(path + query({ limit: 20, ...params }));
    alive(main);
    const rows = page.data.map((item) => `<tr class="row" data-href="${esc(link(item))}">${columns.map((c) => `<td class="${c.num ? "num" : ""}">${c.cell(item)}</td>`).join("")}</tr>`).join("");
    const first = page.data[0];
    const lastItem = page.data[page.data.length - 1];
    const older = page.has_more || params.ending_before ? lastItem : null;
    const newer = params.starting_after || (params.ending_before && page.has_more) ? first : null;
    $("list").innerHTML = page.data.length
      ? `<table><thead><tr>${columns.map((c) => `<th class="${c.num ? "num" : ""}">${esc(c.title)}</th>`).join("")}</tr></thead><tbody>${rows}</tbody></table>
         <div class="pager"><span>${page.data.length} shown</span><span class="actions">
           <button type="button" id="newer" ${newer ? "" : "disabled"}>← Newer</button>
           <button type="button" id="older" ${older ? "" : "disabled"}>Older →</button></span></div>`
      : `<div class="empty">Nothing matches these filters.</div>`;
    $("list").querySelectorAll("tr.row").forEach((tr) => tr.addEventListener("click", () => go(tr.dataset.href)));
    if (page.data.length) {
      $("older").onclick = () => go(`#/${kind}` + query({ ...shown, starting_after: lastItem.id }));
      $("newer").onclick = () => go(`#/${kind}` + query({ ...shown, ending_before: first.id }));
    }
  }

  function dateFilters() {
    return `<label>Created from <input type="date" name="created[gte]"></label>
            <label>Created to <input type="date" name="created[lte]"></label>`;
  }

  function statusFilter(statuses) {
    return `<label>Status <select name="status"><option value="">Any</option>${statuses.map((s) => `<option value="${s}">${s.replace(/_/g, " ")}</option>`).join("")}</select></label>`;
  }

  async function customersPage(main, params) {
    // the search box: an email address is looked up exactly, anything else is a part of the name
    const apiParams = { ...params };
    const q = (apiParams.q || "").trim();
    delete apiParams.q;
    if (q) apiParams[q.includes("@") ? "email" : "name"] = q;
    await listTable(main, {
      title: "Customers",
      sub: "Search by email address or by name",
      kind: "customers",
      filters: `<label class="search">Search <input type="search" name="q" id="customer-search" placeholder="jane@example.com or Jane"></label>${dateFilters()}`,
      path: "/v1/customers",
      params: apiParams,
      link: (c) => `#/customers/${c.id}`,
      columns: [
        { title: "Name", cell: (c) => `<strong>${esc(c.name || "—")}</strong>` },
        { title: "Email", cell: (c) => esc(c.email) },
        { title: "Country", cell: (c) => esc((c.address && c.address.country) || "—") },
        { title: "Balance", num: true, cell: (c) => (c.balance ? money(c.balance, c.balance_currency) : "—") },
        { title: "Created", cell: (c) => when(c.created) },
      ],
    });
    if (q) $("customer-search").value = q;
  }

  const SUB_STATUSES = ["active", "trialing", "past_due", "paused", "incomplete", "unpaid", "canceled", "incomplete_expired", "all", "ended"];
  const INV_STATUSES = ["draft", "open", "paid", "uncollectible", "void"];

  async function priceOptions(selected) {
    if (!state.prices) {
      const page = await get("/v1/prices?limit=100");
      state.prices = page.data;
    }
    return state.prices.map((p) => `<option value="${esc(p.id)}" ${p.id === selected ? "selected" : ""}>${esc(priceLabel(p))}</option>`).join("");
  }

  function priceLabel(p) {
    const every = p.recurring ? ` / ${p.recurring.interval_count > 1 ? p.recurring.interval_count + " " : ""}${p.recurring.interval}` : "";
    const amount = p.unit_amount !== null && p.unit_amount !== undefined ? money(p.unit_amount, p.currency) : "tiered";
    return `${p.nickname || p.id} — ${amount}${every}${p.active === false ? " (archived)" : ""}`;
  }

  async function subscriptionsPage(main, params) {
    await listTable(main, {
      title: "Subscriptions",
      sub: "Filter by status, date and price",
      kind: "subscriptions",
      filters: `${statusFilter(SUB_STATUSES)}<label>Price <select name="price"><option value="">Any</option>${await priceOptions(params.price)}</select></label>${dateFilters()}`,
      path: "/v1/subscriptions",
      params,
      link: (s) => `#/subscriptions/${s.id}`,
      columns: [
        { title: "Subscription", cell: (s) => `<span class="mono">${esc(s.id)}</span>` },
        { title: "Customer", cell: (s) => `<span class="mono">${esc(s.customer)}</span>` },
        { title: "Plan", cell: (s) => esc(planText(s)) },
        { title: "Status", cell: (s) => badge(s.status) + (s.cancel_at_period_end ? ` <span class="badge">cancels</span>` : "") + (s.pause_collection ? ` <span class="badge paused">collection paused</span>` : "") },
        { title: "Period ends", cell: (s) => when(s.current_period_end) },
      ],
    });
  }

  function planText(s) {
    const items = (s.items && s.items.data) || [];
    const find = (id) => (state.prices || []).find((p) => p.id === id);
    return items.map((i) => {
      const p = find(i.price);
      return `${p ? p.nickname || p.id : i.price}${i.quantity && i.quantity !== 1 ? " × " + i.quantity : ""}`;
    }).join(", ");
  }

  async function invoicesPage(main, params) {
    const apiParams = { ...params };
    ["total[gte]", "total[lte]"].forEach((k) => {
      if (apiParams[k]) {
        const minor = toMinor(apiParams[k], apiParams.currency || "EUR");
        apiParams[k] = minor === null ? apiParams[k] : String(minor);
      }
    });
    delete apiParams.currency;
    await listTable(main, {
      title: "Invoices",
      sub: "Filter by status, date, price and amount",
      kind: "invoices",
      filters: `${statusFilter(INV_STATUSES)}<label>Price <select name="price"><option value="">Any</option>${await priceOptions(params.price)}</select></label>${dateFilters()}
        <label>Total from <input name="total[gte]" inputmode="decimal" placeholder="0.00"></label>
        <label>Total to <input name="total[lte]" inputmode="decimal" placeholder="999.00"></label>`,
      path: "/v1/invoices",
      params: apiParams,
      link: (i) => `#/invoices/${i.id}`,
      columns: [
        { title: "Number", cell: (i) => `<strong>${esc(numberOf(i))}</strong>` },
        { title: "Customer", cell: (i) => `<span class="mono">${esc(i.customer)}</span>` },
        { title: "Status", cell: (i) => badge(i.status) },
        { title: "Total", num: true, cell: (i) => money(i.total, i.currency) },
        { title: "Due", num: true, cell: (i) => money(i.amount_due, i.currency) },
        { title: "Created", cell: (i) => when(i.created) },
      ],
    });
  }

  // ------------------------------------------------------------------ details
  const details = { customers: customerDetail, subscriptions: subscriptionDetail, invoices: invoiceDetail };

  function props(pairs) {
    return `<dl class="props">${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;
  }

  function smallTable(headers, rows, empty) {
    if (!rows.length) return `<div class="empty">${esc(empty)}</div>`;
    return `<table><thead><tr>${headers.map((h) => `<th class="${h.startsWith("#") ? "num" : ""}">${esc(h.replace(/^#/, ""))}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
  }

  async function customerDetail(main, id) {
    const [customer, subs, invoices, emails] = await Promise.all([
      get(`/v1/customers/${encodeURIComponent(id)}`),
      get(`/v1/customers/${encodeURIComponent(id)}/subscriptions`),
      get(`/v1/customers/${encodeURIComponent(id)}/invoices?limit=20`),
      get(`/v1/customers/${encodeURIComponent(id)}/emails?limit=20`),
    ]);
    await priceOptions();
    alive(main);
    const card = customer.default_payment_method;
    const subRows = subs.data.map((s) => `<tr class="row" data-href="#/subscriptions/${esc(s.id)}"><td class="mono">${esc(s.id)}</td><td>${esc(planText(s))}</td><td>${badge(s.status)}</td><td>${when(s.current_period_end)}</td></tr>`);
    const invRows = invoices.data.map((i) => `<tr class="row" data-href="#/invoices/${esc(i.id)}"><td><strong>${esc(numberOf(i))}</strong></td><td>${badge(i.status)}</td><td class="num">${money(i.total, i.currency)}</td><td>${when(i.created)}</td></tr>`);
    const mailRows = emails.data.map((e) => `<tr><td>${esc(e.subject)}</td><td>${esc(e.template)}</td><td>${badge(e.status)}</td><td>${when(e.created)}</td></tr>`);
    main.innerHTML = `
      <div class="page-head">
        <div><h1 id="customer-name">${esc(customer.name || customer.email)}</h1><p class="sub">${esc(customer.email)} · <span class="mono">${esc(customer.id)}</span></p></div>
        <div class="actions"><button id="card-link" ${readOnly() ? "disabled" : ""}>Send card-update link</button></div>
      </div>
      <div class="grid2">
        <div class="card"><h2>Details</h2>${props([
          ["Email", esc(customer.email)],
          ["Name", esc(customer.name || "—")],
          ["Country", esc((customer.address && customer.address.country) || "—")],
          ["Language", esc(customer.preferred_locale)],
          ["Tax ID", esc(customer.tax_id || "—")],
          ["Created", when(customer.created)],
        ])}</div>
        <div class="card"><h2>Billing</h2>${props([
          ["Balance", customer.balance ? `${money(customer.balance, customer.balance_currency)} ${customer.balance < 0 ? "(credit)" : ""}` : "none"],
          ["Card", card ? esc(`${card.brand || card.type || "card"} •••• ${card.last4 || ""} ${card.exp_month ? card.exp_month + "/" + card.exp_year : ""}`) : "none on file"],
          ["Subscriptions", esc(subs.data.length)],
          ["Invoices", esc(invoices.data.length) + (invoices.has_more ? "+" : "")],
        ])}</div>
      </div>
      <div class="stack">
        <div class="card table-card"><div class="card-head"><h2 class="pad">Subscriptions</h2></div>${smallTable(["Subscription", "Plan", "Status", "Period ends"], subRows, "No subscriptions")}</div>
        <div class="card table-card"><h2 class="pad">Invoices</h2>${smallTable(["Number", "Status", "#Total", "Created"], invRows, "No invoices")}</div>
        <div class="card table-card"><h2 class="pad">Emails</h2>${smallTable(["Subject", "Template", "Status", "Created"], mailRows, "No emails sent")}</div>
      </div>`;
    main.querySelectorAll("tr.row").forEach((tr) => tr.addEventListener("click", () => go(tr.dataset.href)));
    $("card-link").onclick = () => modal({
      title: "Send a card-update link",
      body: `<p>Create a signed link to ${esc(customer.email)}'s card-update page, to send them. It expires after the days set in the settings.</p>`,
      confirm: "Create link",
      onConfirm: async () => {
        const link = await post(`/v1/customers/${encodeURIComponent(id)}/card_update_link`);
        $("modal-body").innerHTML = `<p>Link for ${esc(customer.email)}, valid until ${when(link.expires_at)}:</p><div class="linkbox mono" id="card-link-url">${esc(link.url)}</div>`;
        $("modal-confirm").hidden = true;
        return false;
      },
    });
  }

  async function subscriptionDetail(main, id) {
    const sub = await get(`/v1/subscriptions/${encodeURIComponent(id)}`);
    const [customer, invoices] = await Promise.all([
      get(`/v1/customers/${encodeURIComponent(sub.customer)}`),
      get("/v1/invoices" + query({ subscription: sub.id, limit: 10 })),
    ]);
    await priceOptions();
    alive(main);
    const live = !["canceled", "incomplete_expired"].includes(sub.status);
    const items = sub.items.data;
    const invRows = invoices.data.map((i) => `<tr class="row" data-href="#/invoices/${esc(i.id)}"><td><strong>${esc(numberOf(i))}</strong></td><td>${badge(i.status)}</td><td class="num">${money(i.total, i.currency)}</td><td>${when(i.created)}</td></tr>`);
    const disabled = readOnly() || !live ? "disabled" : "";
    main.innerHTML = `
      <div class="page-head">
        <div><h1>${esc(planText(sub))}</h1><p class="sub"><a href="#/customers/${esc(customer.id)}">${esc(customer.name || customer.email)}</a> · <span class="mono">${esc(sub.id)}</span> · ${badge(sub.status)}</p></div>
        <div class="actions">
          <button id="change-plan" ${disabled || (items.length !== 1 ? "disabled" : "")}>Change plan or quantity</button>
          ${sub.pause_collection ? `<button id="resume" ${disabled}>Resume collection</button>` : `<button id="pause" ${disabled}>Pause collection</button>`}
          <button id="cancel" class="danger" ${disabled}>Cancel subscription</button>
        </div>
      </div>
      <div class="grid2">
        <div class="card"><h2>Subscription</h2>${props([
          ["Status", badge(sub.status) + (sub.cancel_at_period_end ? " cancels at the period end" : "")],
          ["Plan", esc(planText(sub))],
          ["Current period", `${when(sub.current_period_start)} – ${when(sub.current_period_end)}`],
          ["Billing", `every ${sub.interval_count > 1 ? sub.interval_count + " " : ""}${esc(sub.interval)} in ${esc(sub.currency.toUpperCase())}`],
          ["Trial ends", when(sub.trial_end)],
          ["Collection", sub.pause_collection ? `paused (${esc(sub.pause_collection.behavior)})` : "automatic"],
          ["Created", when(sub.created)],
        ])}</div>
        <div class="card table-card"><h2 class="pad">Invoices</h2>${smallTable(["Number", "Status", "#Total", "Created"], invRows, "No invoices yet")}</div>
      </div>`;
    main.querySelectorAll("tr.row").forEach((tr) => tr.addEventListener("click", () => go(tr.dataset.href)));
    const done = (message) => { toast(message); route(); };
    if (!live) return;
    if (items.length === 1) $("change-plan").onclick = () => changePlan(sub, items[0], done);
    $("cancel").onclick = () => modal({
      title: "Cancel this subscription",
      body: `<label>When <select id="cancel-when"><option value="end">At the end of the period (${when(sub.current_period_end)})</option><option value="now">Now</option></select></label>
             <label>Reason <select id="cancel-feedback"><option value="">—</option><option>too_expensive</option><option>missing_features</option><option>switched_service</option><option>unused</option><option>customer_service</option><option>too_complex</option><option>low_quality</option><option>other</option></select></label>`,
      confirm: "Cancel subscription",
      danger: true,
      onConfirm: async () => {
        const body = { at_period_end: $("cancel-when").value === "end" };
        if ($("cancel-feedback").value) body.feedback = $("cancel-feedback").value;
        await post(`/v1/subscriptions/${encodeURIComponent(sub.id)}/cancel`, body);
        done(body.at_period_end ? "The subscription cancels at the period end." : "The subscription is canceled.");
      },
    });
    if (sub.pause_collection) {
      $("resume").onclick = () => modal({
        title: "Resume collection",
        body: "<p>Invoices are collected again from now on.</p>",
        confirm: "Resume collection",
        onConfirm: async () => { await post(`/v1/subscriptions/${encodeURIComponent(sub.id)}/resume_collection`); done("Collection resumed."); },
      });
    } else {
      $("pause").onclick = () => modal({
        title: "Pause collection",
        body: `<p>The subscription stays active; what becomes of the invoices made while paused:</p>
               <label>Invoices <select id="pause-behavior"><option value="keep_as_draft">Keep as drafts</option><option value="mark_uncollectible">Mark uncollectible</option><option value="void">Void</option></select></label>`,
        confirm: "Pause collection",
        onConfirm: async () => {
          await post(`/v1/subscriptions/${encodeURIComponent(sub.id)}/pause_collection`, { behavior: $("pause-behavior").value });
          done("Collection paused.");
        },
      });
    }
  }

  function previewTable(result, currency) {
    const invoice = result.invoice || result.upcoming_invoice;
    if (!invoice) return `<p class="muted">Nothing is invoiced by this change.</p>`;
    const now = result.invoice ? "Invoiced now" : "On the next invoice";
    const lines = (invoice.lines || []).map((l) => `<tr><td>${esc(l.description || l.price || "")}</td><td class="num">${money(l.amount, invoice.currency || currency)}</td></tr>`).join("");
    const tax = invoice.tax ? `<tr><td>Tax</td><td class="num">${money(invoice.tax, invoice.currency || currency)}</td></tr>` : "";
    return `<div class="preview" id="preview-result"><h3>${now}</h3><table>${lines}${tax}
      <tr class="total"><td>Total</td><td class="num" id="preview-total">${money(invoice.total, invoice.currency || currency)}</td></tr></table></div>`;
  }

  function changePlan(sub, item, done) {
    const body = () => ({
      price_id: $("change-price").value,
      quantity: parseInt($("change-quantity").value, 10),
      proration_behavior: $("change-proration").value,
    });
    modal({
      title: "Change plan or quantity",
      body: `<label>Price <select id="change-price">${(state.prices || []).filter((p) => p.currency === sub.currency && (p.active !== false || p.id === item.price)).map((p) => `<option value="${esc(p.id)}" ${p.id === item.price ? "selected" : ""}>${esc(priceLabel(p))}</option>`).join("")}</select></label>
             <label>Quantity <input id="change-quantity" type="number" min="1" max="10000" value="${esc(item.quantity || 1)}"></label>
             <label>Proration <select id="change-proration"><option value="create_prorations">Prorate on the next invoice</option><option value="always_invoice">Prorate and invoice now</option><option value="none">No proration</option></select></label>
             <div id="preview-box"><p class="hint">Preview the change to see what it bills.</p></div>`,
      secondary: "Preview",
      confirm: "Confirm change",
      onSecondary: async () => {
        const result = await post(`/v1/subscriptions/${encodeURIComponent(sub.id)}/preview`, body());
        $("preview-box").innerHTML = previewTable(result, sub.currency);
        return false;
      },
      onConfirm: async () => {
        await post(`/v1/subscriptions/${encodeURIComponent(sub.id)}/change`, body());
        done("The subscription was changed.");
      },
    });
  }

  async function invoiceDetail(main, id) {
    const invoice = await get(`/v1/invoices/${encodeURIComponent(id)}`);
    const [customer, notes] = await Promise.all([
      get(`/v1/customers/${encodeURIComponent(invoice.customer)}`),
      get(`/v1/invoices/${encodeURIComponent(id)}/credit_notes`),
    ]);
    alive(main);
    const cur = invoice.currency;
    const lines = (invoice.lines || []).map((l) => `<tr><td>${esc(l.description || "")}</td><td class="num">${esc(l.quantity || "")}</td><td class="num">${money(l.amount, cur)}</td></tr>`);
    const noteRows = notes.data.map((n) => `<tr><td>${esc(n.number)}</td><td>${esc(n.reason || "—")}</td><td class="num">${money(n.total, n.currency)}</td><td>${when(n.created)}</td></tr>`);
    const ro = readOnly() ? "disabled" : "";
    main.innerHTML = `
      <div class="page-head">
        <div><h1>Invoice ${esc(numberOf(invoice))}</h1><p class="sub"><a href="#/customers/${esc(customer.id)}">${esc(customer.name || customer.email)}</a> · <span class="mono">${esc(invoice.id)}</span> · ${badge(invoice.status)}</p></div>
        <div class="actions">
          ${invoice.status === "open" || invoice.status === "uncollectible" ? `<button id="retry" ${ro}>Retry payment</button>` : ""}
          ${invoice.status === "paid" || invoice.status === "open" ? `<button id="credit" ${ro}>Credit note or refund</button>` : ""}
          ${invoice.hosted_invoice_url ? `<a class="button-link" href="${esc(invoice.hosted_invoice_url)}" target="_blank" rel="noopener">Hosted page</a>` : ""}
        </div>
      </div>
      <div class="grid2">
        <div class="card"><h2>Summary</h2>${props([
          ["Status", badge(invoice.status)],
          ["Total", money(invoice.total, cur)],
          ["Tax", money(invoice.tax || 0, cur)],
          ["Paid", money(invoice.amount_paid || 0, cur)],
          ["Due", money(invoice.amount_due, cur)],
          ["Subscription", invoice.subscription ? `<a href="#/subscriptions/${esc(invoice.subscription)}" class="mono">${esc(invoice.subscription)}</a>` : "—"],
          ["Created", when(invoice.created)],
        ])}</div>
        <div class="card table-card"><h2 class="pad">Lines</h2>${smallTable(["Description", "#Qty", "#Amount"], lines, "No lines")}</div>
      </div>
      <div class="card table-card"><h2 class="pad">Credit notes</h2>${smallTable(["Number", "Reason", "#Total", "Created"], noteRows, "No credit notes")}</div>`;
    const done = (message) => { toast(message); route(); };
    if ($("retry")) $("retry").onclick = () => modal({
      title: "Retry the payment",
      body: `<p>Charge ${money(invoice.amount_due, cur)} to ${esc(customer.email)}'s payment method on file now.</p>`,
      confirm: "Charge now",
      onConfirm: async () => {
        const result = await post(`/v1/invoices/${encodeURIComponent(id)}/pay`, {});
        const status = (result.invoice || result).status;
        done(status === "paid" ? "The invoice is paid." : `The payment did not go through (${status}).`);
      },
    });
    if ($("credit")) $("credit").onclick = () => modal({
      title: invoice.status === "paid" ? "Credit note or refund" : "Credit note",
      body: `<label>Amount (${esc(cur.toUpperCase())}) <input id="credit-amount" inputmode="decimal" placeholder="${esc(decimal(invoice.total, cur.toUpperCase()))}"></label>
             ${invoice.status === "paid" ? `<label>How <select id="credit-how"><option value="refund">Refund to the card</option><option value="credit">Credit the customer's balance</option></select></label>` : ""}
             <label>Reason <select id="credit-reason"><option value="">—</option><option value="requested_by_customer">Requested by the customer</option><option value="duplicate">Duplicate</option><option value="fraudulent">Fraudulent</option><option value="order_change">Order change</option><option value="product_unsatisfactory">Product unsatisfactory</option></select></label>`,
      confirm: "Issue",
      danger: true,
      onConfirm: async () => {
        const amount = toMinor($("credit-amount").value || decimal(invoice.total, cur.toUpperCase()), cur);
        if (!amount) throw new ApiError(400, { message: "the amount is not a number of " + cur.toUpperCase(), param: "amount" });
        const reason = $("credit-reason").value || undefined;
        const how = $("credit-how") ? $("credit-how").value : "note";
        if (how === "refund") {
          await post("/v1/refunds", { invoice: id, amount, reason: reason === "order_change" || reason === "product_unsatisfactory" ? "requested_by_customer" : reason });
          done("Refunded.");
          return;
        }
        const body = { lines: [{ type: "custom_line_item", amount, description: "Credit from the dashboard" }], reason: reason === "requested_by_customer" ? undefined : reason };
        if (how === "credit") body.credit_amount = amount;
        await post(`/v1/invoices/${encodeURIComponent(id)}/credit_notes`, body);
        done("Credit note issued.");
      },
    });
  }

  // ------------------------------------------------------------------ start
  $("signin-form").addEventListener("submit", signIn);
  $("tab-user").addEventListener("click", () => setMode("user"));
  $("tab-key").addEventListener("click", () => setMode("key"));
  $("signout").addEventListener("click", signOut);
  $("modal-cancel").addEventListener("click", closeModal);
  window.addEventListener("hashchange", route);
  call("GET", "/dashboard/session")
    .then((session) => (session.signed_in ? started(session) : showSignIn("")))
    .catch(() => showSignIn(""));
})();
