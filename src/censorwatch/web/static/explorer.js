// Small conveniences; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Filters: choosing a verdict or method applies it at once.
  for (const select of document.querySelectorAll("form.filters select")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
  // Measurement rows open on click anywhere in the row.
  for (const row of document.querySelectorAll("table.list tbody tr")) {
    const open = row.querySelector("a.open");
    if (!open) continue;
    row.classList.add("clickable");
    row.addEventListener("click", (event) => {
      if (event.target.closest("a")) return;
      window.location.href = open.href;
    });
  }
});
