// Sign-in (/login): session.login posts to /api/v1/auth/token; on success the page goes to
// ?next= (only a path on this site, so the page cannot be used to send people elsewhere) or /.
import { initPage, session, ApiError, t, announce } from "/static/js/core.js";
import { clearFieldError, errorText, focusOn, showFieldError } from "/static/js/pages-util.js";

const NS = "partner";
const $ = (id) => document.getElementById(id);
const emailInput = $("login-email");
const password = $("login-password");
const submit = $("login-submit");
const formError = $("login-error");

/** Where to go after signing in: a same-origin path from ?next=, else the map. */
export function nextPath(search) {
  const next = new URLSearchParams(search).get("next");
  // "/x" only: not "//host" or "/\host" (protocol-relative), not "https://…"
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) return "/";
  try {
    const url = new URL(next, window.location.origin);
    if (url.origin !== window.location.origin) return "/";
    return url.pathname + url.search + url.hash;
  } catch {
    return "/";
  }
}

function clearErrors() {
  formError.hidden = true;
  formError.textContent = "";
  clearFieldError(emailInput, $("login-email-error"));
  clearFieldError(password, $("login-password-error"));
}

function fail(text, control) {
  formError.textContent = text;
  formError.hidden = false;
  // both fields describe the error, so a screen reader hears it on either
  for (const input of [emailInput, password]) {
    const ids = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    if (!ids.includes("login-error")) ids.push("login-error");
    input.setAttribute("aria-describedby", ids.join(" "));
  }
  (control || emailInput).focus();
}

async function signIn(event) {
  event.preventDefault();
  clearErrors();
  const email = emailInput.value.trim();
  let firstBad = null;
  if (!email || !emailInput.checkValidity()) {
    showFieldError(emailInput, $("login-email-error"), t(`${NS}.login.need_email`));
    firstBad = emailInput;
  }
  if (!password.value) {
    showFieldError(password, $("login-password-error"), t(`${NS}.login.need_password`));
    firstBad = firstBad || password;
  }
  if (firstBad) {
    fail(t(`${NS}.login.fix_errors`), firstBad);
    return;
  }
  submit.disabled = true;
  submit.setAttribute("aria-busy", "true");
  try {
    await session.login(email, password.value);
    announce(t(`${NS}.login.signed_in`));
    window.location.assign(nextPath(window.location.search));
  } catch (error) {
    password.value = "";
    const text = error instanceof ApiError && error.status === 401
      ? t(`${NS}.login.wrong`)
      : error instanceof ApiError && error.status === 422 ? t(`${NS}.login.invalid`) : errorText(error, NS);
    fail(text, error instanceof ApiError && error.status === 401 ? password : emailInput);
  } finally {
    submit.disabled = false;
    submit.removeAttribute("aria-busy");
  }
}

async function main() {
  const { user } = await initPage({ namespaces: [NS], titleKey: `${NS}.login.title` });
  $("login-form").addEventListener("submit", signIn);
  emailInput.addEventListener("input", () => clearFieldError(emailInput, $("login-email-error")));
  password.addEventListener("input", () => clearFieldError(password, $("login-password-error")));
  const params = new URLSearchParams(window.location.search);
  const note = $("login-signed-in");
  if (user && params.get("reason") === "forbidden") {
    // signed in, but the page in ?next= needs another role
    note.textContent = `${t("common.errors.forbidden")} ${t(`${NS}.login.other_account`, { name: user.name || user.email || "" })}`;
    note.className = "alert alert-warning";
    note.hidden = false;
  } else if (user) {
    note.textContent = t(`${NS}.login.already`, { name: user.name || user.email || "" });
    note.className = "alert alert-info";
    note.hidden = false;
  }
  if (params.get("next")) focusOn($("login-heading"));
  document.body.dataset.state = "ready";
}

main();
