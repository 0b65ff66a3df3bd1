// The signed-in person: who they are (GET /api/me), their role on the page (<html data-role>, which
// session.css reads to hide what they may not do), the CSRF token app.js sends with writes, and the
// way to the sign-in page for a browser with neither a session nor a saved token.
"use strict";

(() => {
  const S = (window.FactorySession = { actor: null, role: null, csrf: null, via: null });
  const savedToken = () => localStorage.getItem("factory.token") || "";

  async function me() {
    const headers = { Accept: "application/json" };
    if (savedToken()) headers.Authorization = `Bearer ${savedToken()}`;
    return fetch("/api/me", { headers, cache: "no-store", credentials: "same-origin" });
  }

  async function toSignIn() {
    const r = await fetch("/auth/methods", { cache: "no-store" });
    const m = r.ok ? await r.json() : {};
    if (m.oidc || m.github || m.local) location.replace("/static/signin.html");
  }

  async function load() {
    const r = await me();
    if (r.status === 401) {
      // the person chose to enter an access token on the sign-in page: the dashboard's token gate asks
      if (!savedToken() && !sessionStorage.getItem("factory.use-token")) await toSignIn();
      return;
    }
    if (!r.ok) return;
    const who = await r.json();
    Object.assign(S, who);
    document.documentElement.dataset.role = who.role;
    const nav = document.querySelector("nav.nav");
    if (nav && !document.getElementById("nav-audit")) {
      const a = document.createElement("a");
      a.id = "nav-audit";
      a.href = "/static/audit.html";
      a.textContent = "Audit";
      nav.append(a);
    }
    const who_el = document.getElementById("signed-in-as");
    if (who_el) who_el.textContent = who.actor;
  }

  document.addEventListener("DOMContentLoaded", () => {
    load().catch(() => {});
    // a token entered in the dashboard's gate (app.js saves it in its own submit handler, after this one)
    const gate = document.getElementById("token-form");
    if (gate) gate.addEventListener("submit", () => setTimeout(() => load().catch(() => {}), 0));
    const out = document.getElementById("sign-out");
    if (out) {
      out.addEventListener("click", async () => {
        if (S.via !== "cookie") return;
        await fetch("/api/auth/signout", { method: "POST", headers: { "X-CSRF-Token": S.csrf || "" }, credentials: "same-origin" });
        location.replace("/static/signin.html");
      });
    }
  });
})();
