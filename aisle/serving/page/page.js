// The search page: GET /search, GET /fields and GET /autocomplete, as the OpenAPI document at
// /docs describes them. Everything from the service is rendered with textContent, never as HTML.
"use strict";

const MODES = ["dense", "lexical", "hybrid"];
const SUGGEST_DELAY_MS = 150; // debounce: one /autocomplete request per pause in typing
const SUGGESTIONS = 8;

const $ = (id) => document.getElementById(id);
const form = $("search");
const input = $("q");
const list = $("suggestions");
const compare = $("compare");

const state = {
  mode: null, // null: the service's default mode, until the shopper picks one
  autocomplete: document.body.dataset.autocomplete === "on",
  searchSeq: 0, // the latest search; answers to earlier ones are dropped
  suggestSeq: 0,
  suggestTimer: 0,
  active: -1, // the highlighted suggestion
  fields: [], // the index's stored fields (GET /fields): the filters, and what results show
};

// --- talking to the service -----------------------------------------------------------

// {ok: true, body} or {ok: false, detail}: errors are RFC 9457 problem details, and their
// `detail` says what is wrong in words meant for the person who sent the request.
async function get(path, params) {
  const url = path + "?" + new URLSearchParams(params).toString();
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" } });
  } catch (err) {
    return { ok: false, status: 0, detail: "the service could not be reached" };
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
    return { ok: false, status: response.status, detail };
  }
  return { ok: true, body };
}

// Each set filter control as one `filter` condition, in the grammar GET /search documents:
// text and boolean fields field=value, number fields field>=min and field<=max.
function filterParams() {
  const pairs = [];
  for (const control of document.querySelectorAll("#filters [data-field]")) {
    const value = control.value.trim();
    if (!value) continue;
    pairs.push(["filter", `${control.dataset.field}${control.dataset.op}${value}`]);
  }
  return pairs;
}

// [name, value] pairs: `filter` and `fields` repeat.
function searchParams(q, mode) {
  const params = [["q", q], ...filterParams()];
  for (const field of state.fields) params.push(["fields", field.name]);
  if (mode) params.push(["mode", mode]); // absent: the service's default
  return params;
}

function control(tag, field, op, label) {
  const node = el(tag);
  node.dataset.field = field.name;
  node.dataset.op = op;
  const suffix = { ">=": "-min", "<=": "-max", "^=": "-group" }[op] || "";
  node.id = `filter-${field.name}${suffix}`;
  node.setAttribute("aria-label", label);
  node.addEventListener("change", () => {
    if (input.value.trim()) search();
  });
  return node;
}

function choice(select, value, text) {
  const option = el("option", null, text);
  option.value = value;
  select.append(option);
}

// The filter controls, from the index's fields: a list of the most common values for text,
// any / yes / no for booleans, a minimum and a maximum for numbers.
function renderFilters(fields) {
  const box = $("filters");
  for (const field of fields) {
    const label = el("label", "filter");
    label.append(el("span", "name", field.name.replaceAll("_", " ")));
    if (field.type === "string") {
      if (!field.values || field.values.length === 0) continue; // no product has one
      if (field.groups && field.groups.length > 1) {
        // values that are paths ("dairy eggs > milk"): a top level keeps all under it
        const group = control("select", field, "^=", `${field.name} top level`);
        choice(group, "", "any");
        for (const g of field.groups) {
          if (!g.value.includes("|")) choice(group, g.value, `${g.value} (${g.count})`);
        }
        label.append(group);
      }
      const select = control("select", field, "=", field.name);
      choice(select, "", "any");
      // A value holding "|" cannot be one condition's value in GET's text form (a | b is
      // "a or b"): it is left out of the list.
      for (const v of field.values) {
        if (!v.value.includes("|")) choice(select, v.value, `${v.value} (${v.count})`);
      }
      label.append(select);
    } else if (field.type === "boolean") {
      const select = control("select", field, "=", field.name);
      choice(select, "", "any");
      choice(select, "true", "yes");
      choice(select, "false", "no");
      label.append(select);
    } else {
      for (const [op, bound, hint] of [[">=", "min", field.min], ["<=", "max", field.max]]) {
        const number = control("input", field, op, `${field.name} ${bound}`);
        number.type = "number";
        number.step = "any";
        number.placeholder = hint === null || hint === undefined ? bound : `${bound} ${hint}`;
        label.append(number);
      }
    }
    box.append(label);
  }
  box.hidden = box.querySelectorAll("[data-field]").length === 0;
}

async function loadFields() {
  const answer = await get("/fields", {});
  if (!answer.ok) return; // the index is still loading: no filters yet
  state.fields = answer.body.fields;
  renderFilters(state.fields);
}

// --- rendering ------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderResults(ol, results) {
  ol.replaceChildren();
  for (const r of results) {
    const li = el("li", "result");
    li.append(el("span", "title", r.title));
    const meta = el("span", "meta");
    // the stored fields the search asked for: brand and category first, then the others
    const fields = r.fields || {};
    const rank = (name) => ({ brand: 0, category: 1 })[name] ?? 2;
    const names = Object.keys(fields).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    for (const name of names) {
      const value = fields[name];
      if (value === null || value === "") continue;
      const shown = typeof value === "boolean" ? (value ? name : `not ${name}`).replaceAll("_", " ")
        : name === "brand" || name === "category" ? String(value) : `${name} ${value}`;
      const span = el("span", "field", shown);
      span.dataset.field = name;
      meta.append(span);
    }
    meta.append(el("span", "score", "score " + Number(r.score).toFixed(3)));
    meta.append(el("span", "pid", r.product_id));
    li.append(meta);
    ol.append(li);
  }
}

function renderCorrection(p, body) {
  p.replaceChildren();
  p.hidden = !body.corrected_query;
  if (body.corrected_query) {
    p.append("Showing results for ", el("strong", null, body.corrected_query));
  }
}

function summary(body) {
  const n = body.results.length;
  return `${n} result${n === 1 ? "" : "s"} · ${body.mode} · ${Math.round(body.took_ms)} ms`;
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function showMode(mode) {
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.checked = radio.value === mode;
  }
}

// --- searching ------------------------------------------------------------------------

function remember(q) {
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (state.mode) params.set("mode", state.mode);
  if (compare.checked) params.set("compare", "1");
  const query = params.toString();
  history.replaceState(null, "", query ? "?" + query : location.pathname);
}

async function search() {
  const q = input.value;
  closeSuggestions();
  remember(q.trim() ? q : "");
  const seq = ++state.searchSeq;
  const single = $("results");
  const columns = $("columns");
  single.hidden = compare.checked;
  columns.hidden = !compare.checked;
  $("modes").disabled = compare.checked;
  if (!q.trim()) {
    single.replaceChildren();
    columns.replaceChildren();
    $("corrected").hidden = true;
    setStatus("", false);
    return;
  }
  setStatus("Searching…", false);
  if (compare.checked) {
    await searchEachMode(q, seq);
    return;
  }
  const answer = await get("/search", searchParams(q, state.mode));
  if (seq !== state.searchSeq) return;
  if (!answer.ok) {
    single.replaceChildren();
    $("corrected").hidden = true;
    setStatus(answer.detail, true);
    return;
  }
  showMode(answer.body.mode);
  renderCorrection($("corrected"), answer.body);
  renderResults(single, answer.body.results);
  setStatus(summary(answer.body), false);
}

// The side-by-side view: one request per mode, one column each.
async function searchEachMode(q, seq) {
  const answers = await Promise.all(MODES.map((mode) => get("/search", searchParams(q, mode))));
  if (seq !== state.searchSeq) return;
  const columns = $("columns");
  columns.replaceChildren();
  $("corrected").hidden = true;
  MODES.forEach((mode, i) => {
    const answer = answers[i];
    const column = el("section", "column");
    column.dataset.mode = mode;
    column.append(el("h2", null, mode));
    if (answer.ok) {
      column.append(el("p", "summary", summary(answer.body)));
      const corrected = el("p", "corrected");
      renderCorrection(corrected, answer.body);
      column.append(corrected);
      const ol = el("ol", "results");
      renderResults(ol, answer.body.results);
      column.append(ol);
    } else {
      column.append(el("p", "error", answer.detail));
    }
    columns.append(column);
  });
  setStatus(`${MODES.length} modes side by side`, false);
}

// --- autocomplete ---------------------------------------------------------------------

function options() {
  return Array.from(list.querySelectorAll("[role=option]"));
}

function closeSuggestions() {
  clearTimeout(state.suggestTimer);
  state.suggestSeq++; // an answer still on its way is dropped
  state.active = -1;
  list.hidden = true;
  list.replaceChildren();
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("aria-activedescendant");
}

function highlight(index) {
  const all = options();
  state.active = index;
  all.forEach((option, i) => option.setAttribute("aria-selected", String(i === index)));
  if (index >= 0) input.setAttribute("aria-activedescendant", all[index].id);
  else input.removeAttribute("aria-activedescendant");
}

function pick(text) {
  input.value = text;
  search();
}

function renderSuggestions(suggestions) {
  list.replaceChildren();
  state.active = -1;
  suggestions.forEach((s, i) => {
    const li = el("li", "suggestion", s.text);
    li.id = "suggestion-" + i;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    // mousedown, not click: the input would lose focus (and close the list) first
    li.addEventListener("mousedown", (event) => {
      event.preventDefault();
      pick(s.text);
    });
    list.append(li);
  });
  list.hidden = suggestions.length === 0;
  input.setAttribute("aria-expanded", String(suggestions.length > 0));
}

async function suggest() {
  const prefix = input.value;
  if (!state.autocomplete || !prefix.trim()) {
    closeSuggestions();
    return;
  }
  const seq = ++state.suggestSeq;
  const answer = await get("/autocomplete", { prefix, k: SUGGESTIONS });
  if (seq !== state.suggestSeq) return;
  if (!answer.ok) {
    if (answer.status === 404) state.autocomplete = false; // started without an artifact
    closeSuggestions();
    return;
  }
  renderSuggestions(answer.body.suggestions);
}

input.addEventListener("input", () => {
  clearTimeout(state.suggestTimer);
  state.suggestTimer = setTimeout(suggest, SUGGEST_DELAY_MS);
});

input.addEventListener("keydown", (event) => {
  const all = options();
  const open = !list.hidden && all.length > 0;
  if (event.key === "Escape") {
    // An open list closes and keeps the text; otherwise Escape clears the box, as a search
    // input does. Either way a suggestion still on its way is dropped.
    if (open) event.preventDefault();
    closeSuggestions();
    return;
  }
  if (!open) return;
  if (event.key === "ArrowDown") {
    event.preventDefault();
    highlight((state.active + 1) % all.length);
  } else if (event.key === "ArrowUp") {
    event.preventDefault();
    highlight(state.active <= 0 ? all.length - 1 : state.active - 1);
  } else if (event.key === "Enter" && state.active >= 0) {
    event.preventDefault();
    pick(all[state.active].textContent);
  }
});

input.addEventListener("blur", closeSuggestions);

form.addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});

for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => {
    state.mode = radio.value;
    search();
  });
}

compare.addEventListener("change", search);

// A link to the page with ?q=...&mode=...&compare=1 opens on its results (once the filter
// controls are there, so the first search already carries the fields to show).
(async function restore() {
  const params = new URLSearchParams(location.search);
  if (MODES.includes(params.get("mode"))) state.mode = params.get("mode");
  showMode(state.mode);
  compare.checked = params.get("compare") === "1";
  await loadFields();
  if (params.get("q")) {
    input.value = params.get("q");
    search();
  }
})();
