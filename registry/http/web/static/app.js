// config-registry: small progressive enhancements. Every page works without this file.
"use strict";

(function () {
  function num(value) {
    if (value === null || value === undefined) return "—";
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return String(Number(value.toPrecision(4)));
  }

  // "Start from" selects load their choice at once.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // The queue form shows the trained-run picker only for evaluate runs.
  var kind = document.querySelector("#queue-form select[name=kind]");
  if (kind) {
    var sync = function () { kind.form.classList.toggle("is-train", kind.value !== "evaluate"); };
    kind.addEventListener("change", sync);
    sync();
  }

  // The dataset picker offers the built-ins that serve the chosen task.
  var task = document.querySelector("#config-form select[name=task]");
  var picker = document.getElementById("l-f-data-dataset");
  if (task && picker) {
    task.addEventListener("change", function () {
      picker.querySelectorAll("option").forEach(function (option) {
        var tasks = (option.getAttribute("data-tasks") || "").split(" ");
        option.disabled = tasks.indexOf(task.value) < 0;
      });
    });
  }

  // The config form: validate on the server as the user types (POST /configs/-/check).
  var form = document.getElementById("config-form");
  if (!form) return;
  var timer = null;
  var seq = 0;

  function setMessages(prefix, path, messages) {
    var id = prefix + "f-" + path.replace(/\./g, "-");
    var el = document.getElementById(id);
    if (!el) return false;
    el.textContent = (messages || []).join("; ");
    el.hidden = !messages || messages.length === 0;
    return true;
  }

  function render(result) {
    form.querySelectorAll(".field[data-field]").forEach(function (field) {
      var path = field.getAttribute("data-field");
      var errors = result.field_errors[path] || [];
      var warnings = result.field_warnings[path] || [];
      setMessages("e-", path, errors);
      setMessages("w-", path, warnings);
      field.classList.toggle("invalid", errors.length > 0);
      field.classList.toggle("warned", warnings.length > 0);
      var input = field.querySelector("input:not([type=hidden]), select");
      if (input) {
        if (errors.length) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      }
      showDerived(field, path, (result.derived || {})[path]);
    });
    var estimate = result.estimate || {};
    document.querySelectorAll("#estimate dd[data-key]").forEach(function (dd) {
      var key = dd.getAttribute("data-key");
      var value = result.estimate ? estimate[key] : null;
      dd.textContent = key.indexOf("_gb") > 0 && value !== null && value !== undefined
        ? num(value) + " GiB" : num(value);
    });
    var summary = document.getElementById("summary");
    summary.textContent = "";
    var problems = result.other_errors.slice();
    Object.keys(result.field_errors).forEach(function (path) {
      problems.push(path + ": " + result.field_errors[path].join("; "));
    });
    if (problems.length) summary.appendChild(box("error", problems.length + " problem" +
      (problems.length === 1 ? "" : "s") + " to fix:", problems));
    if (result.other_warnings.length) summary.appendChild(box("warning",
      "Warnings (saving is still allowed):", result.other_warnings));
  }

  // An empty architecture field shows what it resolves to (placeholder and hint).
  function showDerived(field, path, value) {
    var hint = document.getElementById("d-f-" + path.replace(/\./g, "-"));
    if (!hint) return;
    hint.hidden = !value;
    if (value) hint.querySelector("strong").textContent = value;
    var input = field.querySelector("input:not([type=checkbox])");
    if (input) input.placeholder = value || "null";
    var empty = field.querySelector("select option[value='']");
    if (empty) empty.textContent = value ? "null: " + value : "null";
  }

  function box(kind, title, items) {
    var div = document.createElement("div");
    div.className = "alert " + kind;
    var strong = document.createElement("strong");
    strong.textContent = title;
    div.appendChild(strong);
    var ul = document.createElement("ul");
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      ul.appendChild(li);
    });
    div.appendChild(ul);
    return div;
  }

  function check() {
    var data = new FormData(form);
    data.delete("yaml_file");
    if ((data.get("yaml") || "").trim()) return; // pasted YAML is checked with the button
    var mine = ++seq;
    fetch(form.getAttribute("data-check-url"), {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) throw new Error("check failed: " + response.status);
      return response.json();
    }).then(function (result) {
      if (mine === seq) render(result);
    }).catch(function () { /* the Check button still works */ });
  }

  form.addEventListener("input", function (event) {
    if (event.target.name === "yaml" || event.target.type === "file") return;
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  });
  form.addEventListener("change", function (event) {
    if (event.target.tagName === "SELECT" || event.target.type === "checkbox") {
      clearTimeout(timer);
      check();
    }
  });
})();
