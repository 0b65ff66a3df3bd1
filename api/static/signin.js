// The sign-in page: shows the ways this Factory offers (GET /auth/methods) and the reason a
// sign-in failed (?error=, shown as text); a local sign-in posts JSON and goes to the dashboard.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  document.addEventListener("DOMContentLoaded", async () => {
    const error = new URLSearchParams(location.search).get("error");
    if (error) {
      $("signin-error").textContent = `Sign-in failed: ${error}`;
      $("signin-error").hidden = false;
    }
    const r = await fetch("/auth/methods", { cache: "no-store" });
    const m = r.ok ? await r.json() : {};
    $("signin-oidc").hidden = !m.oidc;
    $("signin-github").hidden = !m.github;
    $("signin-local").hidden = !m.local;
    $("signin-token").hidden = !m.token;
    $("use-token").addEventListener("click", () => sessionStorage.setItem("factory.use-token", "1"));
    $("signin-local").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const res = await fetch("/auth/local", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ login: $("local-login").value, password: $("local-password").value }),
        credentials: "same-origin",
      });
      if (res.ok) {
        location.replace("/");
        return;
      }
      $("signin-error").textContent = res.status === 401 ? "Wrong login or password." : `Sign-in failed (${res.status}).`;
      $("signin-error").hidden = false;
    });
  });
})();
