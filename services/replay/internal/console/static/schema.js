// Switchyard console: checks an edited payload against its job type's
// JSON Schema (draft 2020-12) as the operator types, and keeps an invalid
// one from being sent. The admin API checks it again; without this script
// the form still works and the server's answer says what is wrong.
import { Validator } from "./vendor/cfworker-json-schema-4.1.6/index.js";

for (const area of document.querySelectorAll("textarea[data-schema]")) {
  let validator;
  try {
    validator = new Validator(JSON.parse(area.dataset.schema), "2020-12", false);
  } catch (e) {
    continue; // no usable schema: the server decides
  }
  const out = document.getElementById(area.getAttribute("aria-describedby"));
  const list = out.querySelector("ul");
  const check = () => {
    let problems = [];
    try {
      const result = validator.validate(JSON.parse(area.value));
      if (!result.valid) {
        problems = result.errors
          .filter((e) => e.keyword !== "properties" && e.keyword !== "$ref")
          .map((e) => `${e.instanceLocation.replace(/^#/, "") || "/"}: ${e.error}`);
      }
    } catch (e) {
      problems = ["not valid JSON: " + e.message];
    }
    list.textContent = "";
    for (const p of problems) {
      const li = document.createElement("li");
      li.textContent = p;
      list.appendChild(li);
    }
    out.hidden = problems.length === 0;
    area.setAttribute("aria-invalid", problems.length ? "true" : "false");
    return problems.length === 0;
  };
  let timer;
  area.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  });
  area.form.addEventListener("submit", (event) => {
    if (!check()) {
      event.preventDefault();
      area.focus();
    }
  });
}
