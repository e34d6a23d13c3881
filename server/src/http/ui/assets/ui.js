// Rampart dashboard: confirmations with a reason, and live updates.
// Our own code, served from /ui/assets/ (the Content-Security-Policy allows
// no inline script). Pages work without it; it adds confirmation dialogs
// and keeps live regions ([data-live]) current.
"use strict";

(function () {
  // A confirmation is open; a change arrived meanwhile.
  let asking = false;
  let stale = false;

  // ---- Confirmation: forms with data-confirm ask first, with a reason. ----
  function confirmDialog() {
    let dialog = document.getElementById("confirm-dialog");
    if (dialog) return dialog;
    dialog = document.createElement("dialog");
    dialog.id = "confirm-dialog";
    dialog.setAttribute("aria-labelledby", "confirm-question");
    const form = document.createElement("form");
    form.method = "dialog";
    const question = document.createElement("p");
    question.id = "confirm-question";
    const label = document.createElement("label");
    label.htmlFor = "confirm-reason";
    label.textContent = "Reason (optional, kept in the audit log)";
    const reason = document.createElement("input");
    reason.id = "confirm-reason";
    reason.type = "text";
    reason.maxLength = 500;
    reason.autocomplete = "off";
    // Production: the name of what the action acts on, typed.
    const typedLabel = document.createElement("label");
    typedLabel.htmlFor = "confirm-typed";
    typedLabel.id = "confirm-typed-label";
    const typed = document.createElement("input");
    typed.id = "confirm-typed";
    typed.type = "text";
    typed.autocomplete = "off";
    typed.spellcheck = false;
    const buttons = document.createElement("div");
    buttons.className = "actions";
    const yes = document.createElement("button");
    yes.value = "yes";
    yes.id = "confirm-yes";
    yes.textContent = "Confirm";
    const no = document.createElement("button");
    no.value = "no";
    no.id = "confirm-no";
    no.textContent = "Cancel";
    buttons.append(yes, no);
    form.append(question, typedLabel, typed, label, reason, buttons);
    dialog.append(form);
    document.body.append(dialog);
    // Enter in a field does not confirm: only the button does.
    form.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && event.target instanceof HTMLInputElement) event.preventDefault();
    });
    typed.addEventListener("input", function () {
      yes.disabled = typed.value.trim() !== (typed.dataset.expected || "");
    });
    return dialog;
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    event.preventDefault();
    const dialog = confirmDialog();
    dialog.querySelector("#confirm-question").textContent = form.dataset.confirm;
    const reason = dialog.querySelector("#confirm-reason");
    reason.value = "";
    const typedField = form.querySelector("input[data-type-to-confirm]");
    const typed = dialog.querySelector("#confirm-typed");
    const typedLabel = dialog.querySelector("#confirm-typed-label");
    const yes = dialog.querySelector("#confirm-yes");
    typed.value = "";
    typed.hidden = typedLabel.hidden = !typedField;
    typed.dataset.expected = typedField ? typedField.dataset.typeToConfirm : "";
    typedLabel.textContent = typedField ? "Production: type " + typed.dataset.expected + " to confirm" : "";
    yes.disabled = Boolean(typedField);
    dialog.returnValue = "";
    dialog.onclose = function () {
      asking = false;
      if (dialog.returnValue !== "yes") {
        if (stale) refresh();
        return;
      }
      const field = form.querySelector('input[name="reason"]');
      if (field) field.value = reason.value;
      if (typedField) typedField.value = typed.value;
      form.submit();
    };
    // Live updates wait while the question is open: the form asked about
    // must stay in the page to be submitted.
    asking = true;
    dialog.showModal();
    (typedField ? typed : reason).focus();
  });

  // ---- A "done" message: announced by putting it into the status region
  // after load (a live region's first content is not read out). ----
  const notice = document.getElementById("notice");
  if (notice && notice.dataset.message) {
    notice.textContent = "";
    window.setTimeout(function () {
      notice.textContent = notice.dataset.message;
    }, 100);
  }

  // ---- Times: UTC as the server writes them, or the browser's local
  // time, everywhere (a <time datetime> element), remembered. ----
  const zoneButton = document.getElementById("time-zone");
  function localTimes() {
    return window.localStorage && window.localStorage.getItem("rampart-times") === "local";
  }
  // The browser's offset at an instant, as UTC±hh:mm.
  function zoneName(at) {
    const two = (n) => String(n).padStart(2, "0");
    const offset = -at.getTimezoneOffset();
    return "UTC" + (offset >= 0 ? "+" : "-") + two(Math.floor(Math.abs(offset) / 60)) + ":" + two(Math.abs(offset) % 60);
  }
  function showTimes() {
    const local = localTimes();
    for (const element of document.querySelectorAll("time[datetime]")) {
      if (!element.dataset.utc) element.dataset.utc = element.textContent;
      if (!local) {
        element.textContent = element.dataset.utc;
        continue;
      }
      const at = new Date(element.getAttribute("datetime"));
      if (isNaN(at)) continue;
      const two = (n) => String(n).padStart(2, "0");
      element.textContent = at.getFullYear() + "-" + two(at.getMonth() + 1) + "-" + two(at.getDate()) + " " +
        two(at.getHours()) + ":" + two(at.getMinutes()) + ":" + two(at.getSeconds()) + " " + zoneName(at);
    }
    // Chart axes: each tick's instant is in data-at.
    for (const element of document.querySelectorAll("svg text.time[data-at]")) {
      const clock = element.querySelector(".clock");
      const zone = element.querySelector(".zone");
      if (!clock) continue;
      if (!clock.dataset.utc) clock.dataset.utc = clock.textContent;
      if (zone && !zone.dataset.utc) zone.dataset.utc = zone.textContent;
      if (!local) {
        clock.textContent = clock.dataset.utc;
        if (zone) zone.textContent = zone.dataset.utc;
        continue;
      }
      const at = new Date(Number(element.dataset.at));
      const two = (n) => String(n).padStart(2, "0");
      clock.textContent = two(at.getHours()) + ":" + two(at.getMinutes()) +
        (element.dataset.seconds === "1" ? ":" + two(at.getSeconds()) : "");
      if (zone) zone.textContent = " " + zoneName(at);
    }
    if (zoneButton) {
      zoneButton.textContent = local ? "Times: local" : "Times: UTC";
      zoneButton.setAttribute("aria-pressed", String(local));
    }
  }
  if (zoneButton) {
    zoneButton.hidden = false;
    zoneButton.addEventListener("click", function () {
      window.localStorage.setItem("rampart-times", localTimes() ? "utc" : "local");
      showTimes();
    });
  }
  showTimes();

  // ---- Live updates: on a change, fetch this page and swap live regions. ----
  // A region's data-live names what it shows: "*" (anything), "env:NAME",
  // "ramp:ENV/NAME", or a prefix like "ramp:*". The stream's change events
  // name the scopes that changed.
  const live = document.querySelectorAll("[data-live][id]");
  if (live.length === 0 || !window.EventSource) return;
  let pending = false;
  let running = false;

  function watched(scope) {
    for (const region of document.querySelectorAll("[data-live][id]")) {
      const wants = region.dataset.live || "*";
      if (wants === "*" || wants === scope) return true;
      if (wants.endsWith("*") && scope.startsWith(wants.slice(0, -1))) return true;
    }
    return false;
  }

  function onChange(event) {
    const scopes = String(event.data || "").split(" ").filter(Boolean);
    if (scopes.length === 0 || scopes.some(watched)) refresh();
  }

  async function refresh() {
    if (asking) {
      stale = true;
      return;
    }
    stale = false;
    if (running) {
      pending = true;
      return;
    }
    running = true;
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Rampart-Live": "1" },
      });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const region of document.querySelectorAll("[data-live][id]")) {
          const fresh = page.getElementById(region.id);
          // Never replace what the operator is typing into.
          if (fresh && !region.contains(document.activeElement)) region.replaceWith(fresh);
        }
        showTimes();
        document.body.dataset.refreshed = String(Date.now());
      }
    } catch (error) {
      // The next change tries again.
    } finally {
      running = false;
      if (pending) {
        pending = false;
        refresh();
      }
    }
  }

  // One stream per page, closed when the page is left (a page kept in the
  // back/forward cache must not hold a connection: browsers allow only a
  // few per server) and opened again when it is shown.
  let events = null;
  function connect() {
    if (events) return;
    events = new EventSource("/ui/events");
    events.addEventListener("change", onChange);
    events.addEventListener("open", function () {
      document.body.dataset.live = "connected";
    });
  }
  window.addEventListener("pagehide", function () {
    if (events) events.close();
    events = null;
    delete document.body.dataset.live;
  });
  window.addEventListener("pageshow", function (event) {
    connect();
    if (event.persisted) refresh();
  });
  connect();
})();
