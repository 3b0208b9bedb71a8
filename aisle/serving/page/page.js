// The search page: GET /search, GET /fields and GET /autocomplete, as the OpenAPI document at
// /docs describes them. Everything from the service is rendered with textContent, never as HTML.
"use strict";

const MODES = ["dense", "lexical", "hybrid"];
const SUGGEST_DELAY_MS = 150; // debounce: one /autocomplete request per pause in typing
const SUGGESTIONS = 8;
// GET /fields answers 503 while the index loads: asked again after each of these pauses, then
// only when a search answers from an index version the filters were not built for.
const FIELDS_RETRY_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
// A number as GET /search's filter grammar takes one: at most 15 digits either side of the
// point and no exponent (the service refuses "1e3"). The same, as an input's pattern.
const NUMBER = /^[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})$/;
const NUMBER_PATTERN = "\\s*[+\\-]?(?:[0-9]{1,15}(?:\\.[0-9]{0,15})?|\\.[0-9]{1,15})\\s*";

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
  fieldsVersion: null, // the index version those fields are of
  fieldsSeq: 0, // the latest GET /fields; answers to earlier ones are dropped
  fieldsTimer: 0,
  fieldsPending: false, // a GET /fields is on its way, or will be tried again
  sent: null, // the latest search sent: {q, seq}
  // Filter conditions from the URL ([id, value, condition]) until the controls they set are
  // built: searches carry them meanwhile, and renderFilters sets the controls from them.
  wanted: null,
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
  for (const [, , condition] of state.wanted || []) pairs.push(["filter", condition]);
  return pairs;
}

// What is wrong with the first number filter the service would refuse, or null; each number
// control is marked aria-invalid as it is.
function filterProblem() {
  let problem = null;
  for (const control of document.querySelectorAll("#filters [data-number]")) {
    const value = control.value.trim();
    const bad = value !== "" && !NUMBER.test(value);
    control.setAttribute("aria-invalid", String(bad));
    if (bad && problem === null) {
      problem = `${control.getAttribute("aria-label")}: "${value}" is not a number the search ` +
        "takes; write digits with at most one point, such as 12.5 (no exponent)";
    }
  }
  return problem;
}

// [name, value] pairs: `filter` and `fields` repeat.
function searchParams(q, mode) {
  const params = [["q", q], ...filterParams()];
  for (const field of state.fields) params.push(["fields", field.name]);
  if (mode) params.push(["mode", mode]); // absent: the service's default
  return params;
}

// A field's name as the page shows it, and as its controls are named: "in stock".
function shown(name) {
  return name.replaceAll("_", " ");
}

// The id of the control that sets a condition on field `name` with operator `op`.
function controlId(name, op) {
  const suffix = { ">=": "-min", "<=": "-max", "^=": "-group" }[op] || "";
  return `filter-${name}${suffix}`;
}

function control(tag, field, op, label) {
  const node = el(tag);
  node.dataset.field = field.name;
  node.dataset.op = op;
  node.id = controlId(field.name, op);
  node.setAttribute("aria-label", label);
  node.addEventListener("change", () => {
    if (input.value.trim()) search();
    else filterProblem(); // no search to refuse: the control is marked all the same
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
  // A reload (a new index version) keeps what the shopper set, where the control is still there.
  const kept = new Map();
  for (const old of box.querySelectorAll("[data-field]")) {
    if (old.value) kept.set(old.id, old.value);
  }
  for (const [id, value] of state.wanted || []) kept.set(id, value); // from the URL
  state.wanted = null;
  for (const old of box.querySelectorAll(".filter")) old.remove();
  for (const field of fields) {
    const name = shown(field.name);
    const label = el("label", "filter");
    label.append(el("span", "name", name));
    if (field.type === "string") {
      if (!field.values || field.values.length === 0) continue; // no product has one
      if (field.groups && field.groups.length > 1) {
        // values that are paths ("dairy eggs > milk"): a top level keeps all under it
        const group = control("select", field, "^=", `${name} top level`);
        choice(group, "", "any");
        for (const g of field.groups) {
          if (!g.value.includes("|")) choice(group, g.value, `${g.value} (${g.count})`);
        }
        label.append(group);
      }
      const select = control("select", field, "=", name);
      choice(select, "", "any");
      // A value holding "|" cannot be one condition's value in GET's text form (a | b is
      // "a or b"): it is left out of the list.
      for (const v of field.values) {
        if (!v.value.includes("|")) choice(select, v.value, `${v.value} (${v.count})`);
      }
      label.append(select);
    } else if (field.type === "boolean") {
      const select = control("select", field, "=", name);
      choice(select, "", "any");
      choice(select, "true", "yes");
      choice(select, "false", "no");
      label.append(select);
    } else {
      for (const [op, bound, hint] of [[">=", "min", field.min], ["<=", "max", field.max]]) {
        // Text, not type=number: that one takes "1e3", which the service refuses, and reads
        // as empty (so no filter at all) whatever it cannot parse.
        const number = control("input", field, op, `${name} ${bound}`);
        number.type = "text";
        number.inputMode = "decimal";
        number.pattern = NUMBER_PATTERN;
        number.dataset.number = "";
        number.addEventListener("input", () => {
          if (number.getAttribute("aria-invalid") === "true") filterProblem();
        });
        number.placeholder = hint === null || hint === undefined ? bound : `${bound} ${hint}`;
        label.append(number);
      }
    }
    box.append(label);
  }
  let restored = 0;
  for (const node of box.querySelectorAll("[data-field]")) {
    const value = kept.get(node.id);
    if (value === undefined) continue;
    if (node.tagName !== "SELECT" || Array.from(node.options).some((o) => o.value === value)) {
      node.value = value;
      restored += 1;
    }
  }
  box.hidden = box.querySelectorAll("[data-field]").length === 0;
  return restored < kept.size; // some choice is gone (its value, or its control)
}

// Loads the fields (the filters, and what results show). A failure (503 while the index
// loads) is tried again later, FIELDS_RETRY_MS apart. When the field names changed, or a filter
// the shopper set is no longer offered, the latest search runs again (while its text is still
// the box's): it was sent with other fields (or none: before they first loaded), and the
// results on screen would not match the page.
async function loadFields(attempt = 0) {
  clearTimeout(state.fieldsTimer);
  state.fieldsPending = true;
  const seq = ++state.fieldsSeq;
  const answer = await get("/fields", {});
  if (seq !== state.fieldsSeq) return; // a later load took over
  if (!answer.ok) {
    if (attempt < FIELDS_RETRY_MS.length) {
      state.fieldsTimer = setTimeout(() => loadFields(attempt + 1), FIELDS_RETRY_MS[attempt]);
    } else {
      state.fieldsPending = false;
    }
    return;
  }
  state.fieldsPending = false;
  const names = (fields) => fields.map((f) => `${f.name}:${f.type}`).join("\n");
  const changed = names(answer.body.fields) !== names(state.fields);
  state.fields = answer.body.fields;
  state.fieldsVersion = answer.body.index_version;
  const dropped = renderFilters(state.fields);
  const last = state.sent;
  if ((changed || dropped) && last && last.seq === state.searchSeq && input.value === last.q) {
    search("replace");
  }
}

// After a search: an answer from an index version the filters were not built for (the index
// was swapped), or a refusal naming a field this index lacks, reloads the fields (unless a
// load is already on its way, which does the same).
function refreshFields(answers) {
  const stale = answers.some((a) => a.ok ? a.body.index_version !== state.fieldsVersion
    : a.status === 422 && a.detail.startsWith("unknown field"));
  if (stale && !state.fieldsPending) loadFields();
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
      const text = typeof value === "boolean" ? (value ? shown(name) : `not ${shown(name)}`)
        : name === "brand" || name === "category" ? String(value) : `${shown(name)} ${value}`;
      const span = el("span", "field", text);
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

// The search in the URL, filters included, so that a reload or a shared link shows it again;
// "push" makes it a history entry of its own (when it differs from the current one), so that
// Back returns to the search before.
function remember(q, how) {
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (state.mode) params.set("mode", state.mode);
  if (compare.checked) params.set("compare", "1");
  for (const [name, value] of filterParams()) params.append(name, value);
  const query = params.toString() ? "?" + params.toString() : "";
  if (how === "push" && query !== location.search) {
    history.pushState(null, "", query || location.pathname);
  } else {
    history.replaceState(null, "", query || location.pathname);
  }
}

// Sets the box, the mode, the view and the filters from the URL; returns its query.
function applyLocation() {
  const params = new URLSearchParams(location.search);
  state.mode = MODES.includes(params.get("mode")) ? params.get("mode") : null;
  showMode(state.mode);
  compare.checked = params.get("compare") === "1";
  $("modes").disabled = compare.checked;
  const wanted = [];
  for (const condition of params.getAll("filter")) {
    const parts = /^([A-Za-z_][A-Za-z0-9_]*)(>=|<=|\^=|=)(.*)$/s.exec(condition);
    if (parts) wanted.push([controlId(parts[1], parts[2]), parts[3].trim(), condition]);
  }
  if (state.fieldsVersion === null) {
    state.wanted = wanted; // the controls are not there yet: renderFilters sets them
  } else {
    const values = new Map(wanted.map(([id, value]) => [id, value]));
    for (const node of document.querySelectorAll("#filters [data-field]")) {
      const value = values.get(node.id) ?? "";
      const offered = node.tagName !== "SELECT" ||
        Array.from(node.options).some((o) => o.value === value);
      node.value = offered ? value : "";
    }
  }
  const q = params.get("q") || "";
  input.value = q;
  return q;
}

// how: "push" for a search the shopper makes, "replace" for one the page makes again.
async function search(how = "push") {
  const q = input.value;
  closeSuggestions();
  remember(q.trim() ? q : "", how);
  const seq = ++state.searchSeq;
  const single = $("results");
  const columns = $("columns");
  single.hidden = compare.checked;
  columns.hidden = !compare.checked;
  $("modes").disabled = compare.checked;
  // The view not shown holds an earlier query's results: gone, so that switching back never
  // shows them as this query's.
  if (compare.checked) {
    single.replaceChildren();
    $("corrected").hidden = true;
  } else {
    columns.replaceChildren();
  }
  if (!q.trim()) {
    single.replaceChildren();
    columns.replaceChildren();
    $("corrected").hidden = true;
    setStatus("", false);
    return;
  }
  const problem = filterProblem();
  if (problem) {
    single.replaceChildren();
    columns.replaceChildren();
    $("corrected").hidden = true;
    setStatus(problem, true);
    return;
  }
  setStatus("Searching…", false);
  state.sent = { q, seq };
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
  } else {
    showMode(answer.body.mode);
    renderCorrection($("corrected"), answer.body);
    renderResults(single, answer.body.results);
    setStatus(summary(answer.body), false);
  }
  refreshFields([answer]);
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
  const failed = MODES.filter((mode, i) => !answers[i].ok);
  if (failed.length === MODES.length) {
    // One message when all three say the same (the index is loading, a filter is wrong).
    const details = [...new Set(answers.map((a) => a.detail))];
    setStatus(details.length === 1 ? `All ${MODES.length} modes failed: ${details[0]}`
      : `All ${MODES.length} modes failed`, true);
  } else if (failed.length > 0) {
    setStatus(`${MODES.length} modes side by side; ${failed.join(" and ")} failed`, true);
  } else {
    setStatus(`${MODES.length} modes side by side`, false);
  }
  refreshFields(answers);
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
      // A right-click opens the menu and picks nothing; so does a ctrl+click, which is
      // macOS's right-click (its mousedown says button 0, then the menu opens). Elsewhere
      // it picks nothing too: one rule on every system.
      if (event.button !== 0 || event.ctrlKey) return;
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
  // Dropped when the text changed since (or the list was closed): suggestions for "ha" are
  // no completions of "hat".
  if (seq !== state.suggestSeq || prefix !== input.value) return;
  if (!answer.ok) {
    if (answer.status === 404) state.autocomplete = false; // started without an artifact
    closeSuggestions();
    return;
  }
  renderSuggestions(answer.body.suggestions);
}

input.addEventListener("input", () => {
  // Whatever is shown or on its way is for the text before this change: gone at once, so
  // neither Enter nor a click can pick a suggestion for the old text.
  closeSuggestions();
  state.suggestTimer = setTimeout(suggest, SUGGEST_DELAY_MS);
});

input.addEventListener("keydown", (event) => {
  // Keys an input method is composing with (Chinese, Japanese, Korean) are its own: Enter
  // commits the composed text, arrows move among its candidates.
  if (event.isComposing || event.keyCode === 229) return;
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

compare.addEventListener("change", () => search());

// Back and Forward: the search of that entry, as the URL holds it.
window.addEventListener("popstate", () => {
  applyLocation();
  search("replace");
});

// A link to the page with ?q=...&mode=...&compare=1&filter=... opens on its results (once the
// filter controls are there, so the first search already carries the fields to show). The box
// shows the query at once; what the shopper types over it meanwhile is theirs, not replaced.
(async function restore() {
  const q = applyLocation();
  await loadFields();
  if (q.trim() && input.value === q) search("replace");
})();
