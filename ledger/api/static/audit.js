// The auditor's page (issue 12, item 4): plain JavaScript, no framework, no build step.
//
// Everything shown comes from the /v1 API with the token the auditor typed (sessionStorage,
// sent as `Authorization: Bearer`). Figures are rounded for display by the one rule of
// docs/audit.md, on the decimal STRINGS of the JSON (never through JavaScript numbers); the
// exact value is in each figure's `title` and in the JSON shown under "Exact JSON".
"use strict";

(() => {
  const TOKEN_KEY = "ledger.audit.token";
  const DASH = "—";
  const USD_PLACES = 2;
  const RATIO_PLACES = 4;
  const AMOUNT_PLACES = 8;
  const TIMELINE_LIMIT = 500;
  const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;
  const TYPED_TIME = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:Z|\+00:00)$/;

  // ------------------------------------------------------------------ display rounding

  /** Round the decimal string `text` half-even to `places` decimals, as a string. */
  function roundHalfEven(text, places) {
    const match = DECIMAL.exec(text);
    if (!match) return text; // not a plain decimal: shown as it is
    const negative = match[1] === "-";
    const whole = match[2];
    const fraction = match[3] || "";
    let digits;
    if (fraction.length <= places) {
      digits = whole + fraction.padEnd(places, "0");
    } else {
      const rest = fraction.slice(places);
      digits = whole + fraction.slice(0, places);
      let up;
      if (rest[0] > "5") up = true;
      else if (rest[0] < "5") up = false;
      else if (/[1-9]/.test(rest.slice(1))) up = true;
      else up = "13579".includes(digits[digits.length - 1]); // a tie: to the even digit
      if (up) digits = increment(digits);
    }
    let integer = digits.slice(0, digits.length - places).replace(/^0+(?=\d)/, "") || "0";
    const decimals = places > 0 ? digits.slice(digits.length - places) : "";
    const zero = /^0*$/.test(integer + decimals);
    return (negative && !zero ? "-" : "") + integer + (places > 0 ? "." + decimals : "");
  }

  /** Add one in the last place of a string of decimal digits ("0999" → "1000"). */
  function increment(digits) {
    const chars = digits.split("");
    for (let i = chars.length - 1; i >= 0; i -= 1) {
      if (chars[i] === "9") {
        chars[i] = "0";
      } else {
        chars[i] = "0123456789"[("0123456789".indexOf(chars[i])) + 1];
        return chars.join("");
      }
    }
    return "1" + chars.join("");
  }

  function stripZeros(text) {
    return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }

  function placesOf(text) {
    const match = DECIMAL.exec(text);
    return match && match[3] ? match[3].length : 0;
  }

  /** The display rule (docs/audit.md): `kind` is usd, ratio, price or amount. */
  function display(value, kind, mark) {
    if (value === null || value === undefined) return DASH;
    if (kind === "usd") return roundHalfEven(value, USD_PLACES);
    if (kind === "ratio") return roundHalfEven(value, RATIO_PLACES);
    if (kind === "price" && mark !== null && mark !== undefined) {
      return roundHalfEven(value, placesOf(mark));
    }
    return stripZeros(roundHalfEven(value, AMOUNT_PLACES));
  }

  // ------------------------------------------------------------------ time

  /** Whole seconds since the epoch of an RFC 3339 UTC time (the fraction dropped). */
  function secondsOf(at) {
    return Math.floor(Date.parse(at.replace(/\.\d+/, "")) / 1000);
  }

  function hasFraction(at) {
    return /\.\d*[1-9]/.test(at);
  }

  function iso(seconds) {
    return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
  }

  /** Is the event's `at` at or before the whole second `seconds`? (exact, no float) */
  function notAfter(at, seconds) {
    const own = secondsOf(at);
    return own < seconds || (own === seconds && !hasFraction(at));
  }

  /** Parse a typed second (UTC): its whole seconds, or null. */
  function typedSeconds(text) {
    const match = TYPED_TIME.exec(text.trim());
    if (!match) return null;
    const seconds = secondsOf(`${match[1]}T${match[2]}Z`);
    if (Number.isNaN(seconds) || iso(seconds) !== `${match[1]}T${match[2]}Z`) return null;
    return seconds;
  }

  // ------------------------------------------------------------------ page state

  const $ = (id) => document.getElementById(id);
  const page = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    account: "",
    events: [],
    verify: null,
    first: 0,
    last: 0,
    request: 0,
  };

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /** A figure: rounded text, the exact value in `title`, its JSON path in `data-field`. */
  function figure(tag, path, value, kind, mark) {
    const exact = value === null || value === undefined ? "undefined (null in the JSON)" : value;
    return el(tag, { "data-field": path, title: exact, class: "num" },
      display(value, kind, mark));
  }

  /** A field the page does not name: text stays text, true/false is yes/no, a number is
   * rounded by its name (docs/audit.md): `*_usd` 2 places, `*_price` the mark's places,
   * anything else as an amount. */
  function generic(tag, path, key, value, mark) {
    if (typeof value === "boolean") return text(tag, path, value ? "yes" : "no");
    if (typeof value === "number") return text(tag, path, String(value));
    if (typeof value === "string" && !DECIMAL.test(value)) return text(tag, path, value);
    const kind = key.endsWith("_usd") ? "usd" : key.endsWith("_price") ? "price" : "amount";
    return figure(tag, path, value, kind, mark);
  }

  function text(tag, path, value) {
    return el(tag, { "data-field": path }, String(value));
  }

  function setStatus(status) {
    $("app").dataset.status = status;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Fetch `path` with the bearer token; the Response, or an ApiError with a plain message. */
  async function call(path, accept) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${page.token}`, Accept: accept || "application/json" },
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, "network", `The server could not be reached (${error.message}).`);
    }
    if (response.ok) return response;
    let code = "";
    let detail = "";
    try {
      const body = await response.json();
      code = body.error || "";
      detail = body.message || "";
    } catch (ignored) {
      detail = response.statusText;
    }
    throw new ApiError(response.status, code, explain(response.status, code, detail));
  }

  function explain(status, code, detail) {
    if (status === 401) {
      return `The token was refused (401 ${code || "unauthorized"}: ${detail}). `
        + "Enter a valid token.";
    }
    if (status === 403) return `This token's role may not do that (403: ${detail}).`;
    if (code === "unknown_account" || status === 404) {
      return `Unknown account (${status} ${code}: ${detail}).`;
    }
    return `The server answered ${status} ${code}: ${detail}`;
  }

  function fail(error) {
    setStatus("error");
    showError(error.message);
    if (error.status === 401) forget("no token");
  }

  /** Drop the token and everything read with it: a refused token shows no account. */
  function forget(said) {
    sessionStorage.removeItem(TOKEN_KEY);
    page.token = "";
    page.account = "";
    page.events = [];
    page.request += 1; // answers still on their way are dropped
    $("who").textContent = said;
    const select = $("account");
    select.replaceChildren(el("option", { value: "" }, "— enter a token first —"));
    select.disabled = true;
    for (const id of ["slider", "at", "show", "from", "to", "download"]) $(id).disabled = true;
    for (const id of ["state-body", "events", "chain-breaks"]) $(id).replaceChildren();
    $("state-head").textContent = "";
    $("timeline-head").textContent = "";
    $("state-json").textContent = "";
    $("chain-status").dataset.state = "unknown";
    $("chain-status").textContent = "not checked yet";
    page.verify = null;
    renderChainOfAccount();
    delete $("app").dataset.account;
    delete $("app").dataset.at;
  }

  // ------------------------------------------------------------------ token and accounts

  async function connect() {
    showError("");
    setStatus("loading");
    let listing;
    try {
      listing = await (await call("/v1/accounts")).json();
    } catch (error) {
      fail(error);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, page.token);
    $("who").textContent = "token accepted";
    const select = $("account");
    select.replaceChildren(el("option", { value: "" }, "— choose an account —"));
    for (const name of listing.accounts) select.append(el("option", { value: name }, name));
    select.disabled = false;
    setStatus("connected");
    checkChain();
  }

  async function checkChain() {
    const status = $("chain-status");
    const breaks = $("chain-breaks");
    status.dataset.state = "checking";
    status.textContent = "checking…";
    breaks.replaceChildren();
    page.verify = null;
    renderChainOfAccount();
    let found;
    try {
      found = await (await call("/v1/verify")).json();
    } catch (error) {
      status.dataset.state = "unavailable";
      status.textContent = error.message;
      return;
    }
    page.verify = found;
    renderChainOfAccount();
    const intact = found.breaks.length === 0;
    status.dataset.state = intact ? "intact" : "broken";
    status.replaceChildren(
      el("strong", { "data-field": "verify.intact" }, intact ? "intact" : "BROKEN"), ": ",
      text("span", "verify.events", found.events), " events in ",
      text("span", "verify.streams", found.streams), " streams (",
      text("span", "verify.accounts", found.accounts), " accounts), ",
      text("span", "verify.snapshots", found.snapshots), " snapshots checked; log position ",
      text("span", "verify.log_position", found.log_position), "; ",
      text("span", "verify.breaks", found.breaks.length), " breaks.",
    );
    found.breaks.forEach((item, i) => {
      const where = item.version === null ? "" : ` at version ${item.version}`;
      breaks.append(el("li", { "data-field": `verify.breaks.${i}`, "data-stream": item.stream },
        `${item.stream}${where}: ${item.reason}`));
    });
    for (const note of found.notes) breaks.append(el("li", { class: "note" }, `note: ${note}`));
    renderChainOfAccount();
  }

  /** Say whether the chosen account's own chain has a break (from the last check). */
  function renderChainOfAccount() {
    const line = $("chain-account");
    if (!page.verify || !page.account) {
      line.dataset.state = "unknown";
      line.textContent = "";
      return;
    }
    const mine = page.verify.breaks.filter((item) => item.stream === page.account);
    line.dataset.state = mine.length ? "broken" : "intact";
    line.textContent = mine.length
      ? `${page.account}: BROKEN, ${mine.length} break(s) in its chain (marked below).`
      : `${page.account}: no break in its chain.`;
    for (const item of $("chain-breaks").children) {
      item.classList.toggle("mine", item.dataset.stream === page.account);
    }
  }

  // ------------------------------------------------------------------ an account over time

  async function chooseAccount(name) {
    showError("");
    page.account = name;
    page.events = [];
    renderChainOfAccount();
    for (const id of ["slider", "at", "show", "from", "to", "download"]) $(id).disabled = !name;
    $("state-body").replaceChildren();
    $("events").replaceChildren();
    $("state-json").textContent = "";
    if (!name) return;
    setStatus("loading");
    const request = ++page.request;
    let events;
    try {
      events = await (await call(`/v1/accounts/${encodeURIComponent(name)}/events`)).json();
    } catch (error) {
      if (request === page.request) fail(error);
      return;
    }
    if (request !== page.request) return;
    page.events = events;
    if (!events.length) {
      setStatus("ready");
      $("state-head").textContent = "no events";
      return;
    }
    page.first = secondsOf(events[0].at);
    const tail = events[events.length - 1].at;
    page.last = secondsOf(tail) + (hasFraction(tail) ? 1 : 0);
    const slider = $("slider");
    slider.max = String(page.last - page.first);
    slider.value = slider.max;
    $("span").textContent = `${iso(page.first)} … ${iso(page.last)} (first and last event)`;
    $("from").value = iso(page.first);
    $("to").value = iso(page.last);
    await showAt(page.last);
  }

  async function showAt(seconds) {
    const at = iso(seconds);
    $("at").value = at;
    $("slider").value = String(Math.min(Math.max(seconds - page.first, 0), page.last - page.first));
    $("slider").setAttribute("aria-valuetext", at); // read out as a time, not an offset
    showError("");
    setStatus("loading");
    const request = ++page.request;
    const name = page.account;
    let raw;
    try {
      const response = await call(
        `/v1/accounts/${encodeURIComponent(name)}/state?at=${encodeURIComponent(at)}`);
      raw = await response.text();
    } catch (error) {
      if (request === page.request) {
        $("state-body").replaceChildren();
        $("events").replaceChildren();
        $("state-head").textContent = "";
        fail(error);
      }
      return;
    }
    if (request !== page.request) return; // a later choice is already on its way
    const state = JSON.parse(raw); // every figure is a string in this JSON: nothing is lost
    renderState(state);
    renderTimeline(seconds);
    $("state-json").textContent = JSON.stringify(state, null, 2); // strings stay strings
    $("app").dataset.account = name;
    $("app").dataset.at = at;
    setStatus("ready");
  }

  function table(caption, headings, rows) {
    return el("table", {},
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows));
  }

  function renderState(state) {
    $("state-head").replaceChildren(
      text("strong", "account", state.account), " (", text("span", "mode", state.mode),
      ") as of ", text("time", "as_of", state.as_of), ", version ",
      text("span", "version", state.version));
    const margin = state.margin;
    const assets = new Set([
      ...Object.keys(state.balances), ...Object.keys(state.debts),
      ...Object.keys(state.collateral), ...Object.keys(state.interest),
      ...Object.keys(margin.max_withdrawable)]);
    const cell = (group, asset, path, key, kind) => {
      const holder = group[asset];
      if (holder === undefined) return el("td", {});
      const value = key === null ? holder : holder[key];
      return figure("td", path, value, kind);
    };
    const assetRows = [...assets].sort().map((asset) => el("tr", { "data-asset": asset },
      el("th", { scope: "row" }, asset),
      cell(state.balances, asset, `balances.${asset}`, null, "amount"),
      cell(state.debts, asset, `debts.${asset}`, null, "amount"),
      cell(state.collateral, asset, `collateral.${asset}.equity`, "equity", "amount"),
      cell(state.collateral, asset, `collateral.${asset}.index_price`, "index_price", "amount"),
      cell(state.collateral, asset, `collateral.${asset}.effective_usd`, "effective_usd", "usd"),
      cell(margin.max_withdrawable, asset, `margin.max_withdrawable.${asset}`, null, "amount"),
      cell(state.interest, asset, `interest.${asset}.accrued`, "accrued", "amount"),
      cell(state.interest, asset, `interest.${asset}.charged`, "charged", "amount")));
    const parts = [table("Balances, debts, collateral and interest",
      ["asset", "balance", "debt", "equity", "index price", "effective USD",
        "max withdrawable", "interest accrued", "interest charged"], assetRows)];

    const columns = [
      ["qty", "amount"], ["entry_price", "price"], ["mark_price", "amount"],
      ["notional", "amount"], ["unrealized_pnl", "amount"], ["leverage", "amount"],
      ["position_margin", "amount"], ["maintenance_margin", "amount"],
      ["initial_margin", "amount"], ["liquidation_price", "price"]];
    // Fields a position has beyond those (conventions, options: bankruptcy_price, delta, ...),
    // shown by the generic rule of docs/audit.md: a `*_price` at the mark's places.
    const named = new Set(["symbol", "margin_type", "side", "auto_add_margin",
      ...columns.map(([key]) => key)]);
    const extra = [...new Set(state.positions.flatMap((p) => Object.keys(p)))]
      .filter((key) => !named.has(key)).sort();
    const positionRows = state.positions.map((p, i) => el("tr", {},
      text("th", `positions.${i}.symbol`, p.symbol),
      text("td", `positions.${i}.margin_type`, p.margin_type),
      text("td", `positions.${i}.side`, p.side),
      ...columns.map(([key, kind]) => figure("td", `positions.${i}.${key}`, p[key], kind,
        p.mark_price)),
      text("td", `positions.${i}.auto_add_margin`, p.auto_add_margin ? "yes" : "no"),
      ...extra.map((key) => key in p
        ? generic("td", `positions.${i}.${key}`, key, p[key], p.mark_price)
        : el("td", {}))));
    parts.push(state.positions.length
      ? table("Positions", ["symbol", "type", "side", "qty", "entry", "mark", "notional",
        "unrealized PnL", "leverage", "position margin", "maintenance margin",
        "initial margin", "liquidation price", "auto-add margin",
        ...extra.map((key) => key.replaceAll("_", " "))], positionRows)
      : el("p", { class: "hint" }, "No positions."));

    const summary = [
      ["equity_usd", "equity USD", "usd"],
      ["effective_equity_usd", "effective equity USD", "usd"],
      ["maintenance_margin_usd", "maintenance margin USD", "usd"],
      ["initial_margin_usd", "initial margin USD", "usd"],
      ["available_usd", "available USD", "usd"],
      ["borrowing_mmr_usd", "borrowing MMR USD", "usd"],
      ["borrowing_imr_usd", "borrowing IMR USD", "usd"],
      ["margin_ratio", "margin ratio", "ratio"],
      ["margin_level", "margin level", "ratio"]];
    parts.push(table("Margin", ["figure", "value"], summary.map(([key, label, kind]) =>
      el("tr", {}, el("th", { scope: "row" }, label),
        figure("td", `margin.${key}`, margin[key], kind)))));

    const units = Object.keys(margin.risk_units).sort();
    if (units.length) {
      const known = ["mr1", "mr2", "mr3", "mr4", "mr5", "mr6", "mr7", "mr8", "mr9", "mmr", "imr",
        "delta", "delta_usd", "spot_in_use"];
      const present = new Set(units.flatMap((unit) => Object.keys(margin.risk_units[unit])));
      const keys = [...known.filter((key) => present.has(key)),
        ...[...present].filter((key) => !known.includes(key)).sort()];
      parts.push(table("Portfolio risk units", ["unit", ...keys], units.map((unit) =>
        el("tr", {}, el("th", { scope: "row" }, unit), ...keys.map((key) =>
          key in margin.risk_units[unit]
            ? figure("td", `margin.risk_units.${unit}.${key}`, margin.risk_units[unit][key],
              key === "delta" || key === "spot_in_use" ? "amount" : "usd")
            : el("td", {}))))));
    }

    // Top-level figures the page does not name (e.g. available_by_asset), by the generic rule.
    const shownTop = new Set(["account", "mode", "as_of", "version", "balances", "debts",
      "collateral", "interest", "positions", "margin"]);
    const rows = [];
    const walk = (path, key, value) => {
      if (value !== null && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) walk(`${path}.${k}`, k, v);
      } else {
        rows.push(el("tr", {}, el("th", { scope: "row" }, path),
          generic("td", path, key, value, null)));
      }
    };
    for (const key of Object.keys(state).filter((k) => !shownTop.has(k)).sort()) {
      walk(key, key, state[key]);
    }
    if (rows.length) parts.push(table("Other figures", ["figure", "value"], rows));
    $("state-body").replaceChildren(...parts);
  }

  function renderTimeline(seconds) {
    const upTo = page.events.filter((event) => notAfter(event.at, seconds));
    const shown = upTo.slice(-TIMELINE_LIMIT).reverse();
    $("timeline-head").textContent = `${upTo.length} of ${page.events.length} events at or `
      + `before ${iso(seconds)}, newest first`
      + (upTo.length > shown.length ? ` (the latest ${shown.length} shown)` : "");
    $("events").replaceChildren(...shown.map(renderEvent));
  }

  const NOT_DETAILS = new Set(["type", "at", "version", "id", "hash", "postings"]);

  function detail(value) {
    if (value === null || value === undefined) return DASH;
    if (typeof value === "string") return DECIMAL.test(value) ? display(value, "amount") : value;
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function renderEvent(event) {
    const details = Object.entries(event).filter(([key]) => !NOT_DETAILS.has(key))
      .map(([key, value]) => `${key}=${detail(value)}`).join(", ");
    const postings = (event.postings || []).map((posting, i) => el("tr", {},
      text("td", `postings.${i}.account`, posting.account),
      text("td", `postings.${i}.asset`, posting.asset),
      figure("td", `postings.${i}.amount`, posting.amount, "amount")));
    const jump = el("button", { type: "button", class: "link", title: "show the state then" },
      el("time", { "data-field": "at" }, event.at));
    jump.addEventListener("click", () => {
      showAt(secondsOf(event.at) + (hasFraction(event.at) ? 1 : 0));
    });
    return el("li", {
      "data-testid": "event", "data-version": event.version, "data-type": event.type,
      "data-at": event.at, "data-hash": event.hash,
    },
    el("div", { class: "event-head" }, jump, " ",
      text("strong", "type", event.type), " ", el("span", { class: "hint" }, "v"),
      text("span", "version", event.version),
      event.id === undefined ? "" : el("span", {}, " id ", text("code", "id", event.id)),
      " ", el("code", { class: "hash", title: `hash ${event.hash}` }, event.hash.slice(0, 12))),
    details ? el("div", { class: "details" }, details) : "",
    postings.length ? el("table", { class: "postings" },
      el("caption", { class: "visually-hidden" }, "postings"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "account"),
        el("th", { scope: "col" }, "asset"), el("th", { scope: "col" }, "amount"))),
      el("tbody", {}, ...postings)) : "");
  }

  // ------------------------------------------------------------------ the statement

  async function downloadStatement() {
    const from = typedSeconds($("from").value);
    const to = typedSeconds($("to").value);
    if (from === null || to === null) {
      showError("The statement period needs two seconds in UTC, e.g. 2025-03-03T12:00:00Z.");
      return;
    }
    showError("");
    const name = page.account;
    const query = `from=${encodeURIComponent(iso(from))}&to=${encodeURIComponent(iso(to))}`;
    let blob;
    try {
      const response = await call(
        `/v1/accounts/${encodeURIComponent(name)}/statement?${query}&format=csv`, "text/csv");
      blob = await response.blob();
    } catch (error) {
      fail(error);
      return;
    }
    const file = `statement-${name}-${iso(from)}-${iso(to)}.csv`.replace(/[^A-Za-z0-9._-]/g, "_");
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: file });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    const done = $("statement-done");
    done.textContent = `downloaded ${file} (${blob.size} bytes)`;
    done.dataset.file = file;
  }

  // ------------------------------------------------------------------ wiring

  function start() {
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const typed = $("token").value.trim();
      $("token").value = "";
      if (!/^[\x21-\x7e]+$/.test(typed)) { // a header carries printable ASCII only
        forget("no token");
        setStatus("error");
        showError("That is not a token: tokens are printable ASCII without spaces.");
        return;
      }
      page.token = typed;
      connect();
    });
    $("forget").addEventListener("click", () => {
      forget("token forgotten");
      setStatus("idle");
    });
    $("chain-check").addEventListener("click", checkChain);
    $("account").addEventListener("change", (e) => chooseAccount(e.target.value));
    const slider = $("slider");
    slider.addEventListener("input", () => {
      $("at").value = iso(page.first + Number.parseInt(slider.value, 10));
      slider.setAttribute("aria-valuetext", $("at").value);
    });
    slider.addEventListener("change", () => {
      showAt(page.first + Number.parseInt(slider.value, 10));
    });
    $("pick").addEventListener("submit", (e) => {
      e.preventDefault();
      const seconds = typedSeconds($("at").value);
      if (seconds === null) {
        showError(`Not a second in UTC: "${$("at").value}" (write 2025-03-03T12:00:00Z).`);
        return;
      }
      showAt(seconds);
    });
    $("statement-form").addEventListener("submit", (e) => {
      e.preventDefault();
      downloadStatement();
    });
    if (page.token) {
      $("who").textContent = "token from this session";
      connect();
    }
  }

  // For the browser test and the curious: the display rule, callable from the console.
  window.ledgerAudit = Object.freeze({ roundHalfEven, display, typedSeconds });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
