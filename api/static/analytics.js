// Analytics: success rate, durations, runs and cost per day, per repo and agent type, review
// rounds per workflow, drawn as small SVG charts (no library).
"use strict";

(() => {
  const { el } = F;
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = String(text);
    return n;
  }

  // Vertical bars over days (values[i] for labels[i]); `fmt` formats the axis and titles.
  function barChart(id, title, labels, values, fmt, cls) {
    const W = 640, H = 200, L = 44, B = 28, T = 10;
    const max = Math.max(...values, 0) || 1;
    const bw = (W - L - 8) / Math.max(values.length, 1);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: `chart ${cls}`, id, "aria-label": title, preserveAspectRatio: "none" });
    root.append(svg("title", {}, title));
    for (const frac of [0, 0.5, 1]) {
      const y = H - B - (H - B - T) * frac;
      root.append(svg("line", { x1: L, x2: W, y1: y, y2: y, class: "grid-line" }), svg("text", { x: L - 6, y: y + 4, class: "axis", "text-anchor": "end" }, fmt(max * frac)));
    }
    values.forEach((v, i) => {
      const h = ((H - B - T) * v) / max;
      const bar = svg("rect", { x: L + i * bw + bw * 0.15, y: H - B - h, width: Math.max(bw * 0.7, 1), height: h, class: "bar", "data-day": labels[i], "data-value": v });
      bar.append(svg("title", {}, `${labels[i]}: ${fmt(v)}`));
      root.append(bar);
    });
    const step = Math.ceil(labels.length / 8);
    labels.forEach((lab, i) => {
      if (i % step === 0) root.append(svg("text", { x: L + i * bw + bw / 2, y: H - 8, class: "axis", "text-anchor": "middle" }, lab.slice(5)));
    });
    return el("figure", { class: "panel chart-box" }, el("figcaption", {}, title), root);
  }

  // Horizontal bars for groups (repo, agent type): one row each.
  function hbars(id, title, rows, key, value, fmt) {
    const W = 640, row = 26, L = 150;
    const H = Math.max(rows.length, 1) * row + 8;
    const max = Math.max(...rows.map(value), 0) || 1;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart hbars", id, "aria-label": title });
    root.append(svg("title", {}, title));
    rows.forEach((r, i) => {
      const y = 4 + i * row;
      const w = ((W - L - 90) * value(r)) / max;
      root.append(svg("text", { x: L - 8, y: y + 16, class: "axis", "text-anchor": "end" }, String(r[key]).slice(0, 22)),
        svg("rect", { x: L, y: y + 4, width: Math.max(w, 1), height: row - 10, class: "bar" }),
        svg("text", { x: L + w + 6, y: y + 16, class: "axis" }, fmt(value(r))));
    });
    return el("figure", { class: "panel chart-box" }, el("figcaption", {}, title), root);
  }

  const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)}%`);
  const money = (x) => `$${Number(x).toFixed(x && x < 1 ? 3 : 2)}`;

  function stat(label, value, id) {
    return el("div", { class: "stat", id }, el("span", { class: "stat-value" }, value), el("span", { class: "stat-label" }, label));
  }

  function groupTable(rows, key, label) {
    if (!rows.length) return el("p", { class: "empty" }, "No runs.");
    return el("div", { class: "table-wrap" }, el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, [label, "Runs", "Done", "Failed", "Success", "Median", "p90", "Cost"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", { dataset: { group: r[key] } },
        el("td", {}, r[key]), el("td", {}, String(r.runs)), el("td", {}, String(r.done)), el("td", {}, String(r.failed)),
        el("td", {}, pct(r.success_rate)), el("td", {}, F.fmtDuration(r.median_duration_s)), el("td", {}, F.fmtDuration(r.p90_duration_s)),
        el("td", {}, money(r.cost_usd)))))));
  }

  F.route("analytics", (view) => {
    const today = new Date().toISOString().slice(0, 10);
    const monthAgo = new Date(Date.now() - 29 * 864e5).toISOString().slice(0, 10);
    const since = el("input", { id: "an-since", type: "date", name: "since", value: monthAgo });
    const until = el("input", { id: "an-until", type: "date", name: "until", value: today });
    const repo = el("select", { id: "an-repo", name: "repo" }, el("option", { value: "" }, "all repos"),
      F.info.repos.map((r) => el("option", { value: r.name }, r.name)));
    const err = el("p", { class: "error-text", role: "alert", hidden: true });
    const body = el("div", { id: "analytics" });
    const form = el("form", { class: "filters", id: "analytics-filters", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      el("label", {}, "From ", since), el("label", {}, "To ", until), el("label", {}, "Repo ", repo), el("button", { type: "submit" }, "Show"));
    view.append(F.heading("Analytics"), form, err, body);
    const gen = F.current();

    async function load() {
      const p = new URLSearchParams();
      if (since.value) p.set("since", since.value);
      if (until.value) p.set("until", until.value);
      if (repo.value) p.set("repo", repo.value);
      let a;
      try {
        a = await F.api(`/api/analytics?${p}`);
        err.hidden = true;
      } catch (e) {
        if (e instanceof F.AuthError) return;
        err.textContent = e.message;
        err.hidden = false;
        return;
      }
      if (gen !== F.current()) return;
      const t = a.totals;
      const days = a.per_day.map((d) => d.day);
      body.replaceChildren(
        el("div", { class: "stats" },
          stat("runs", String(t.runs), "stat-runs"), stat("success rate", pct(t.success_rate), "stat-success"),
          stat("median duration", F.fmtDuration(t.median_duration_s), "stat-median"), stat("p90 duration", F.fmtDuration(t.p90_duration_s), "stat-p90"),
          stat("cost", money(t.cost_usd), "stat-cost"), stat("turns", String(t.turns), "stat-turns")),
        el("div", { class: "charts" },
          barChart("chart-runs", "Runs per day", days, a.per_day.map((d) => d.runs), (x) => String(Math.round(x)), "runs"),
          barChart("chart-cost", "Cost per day (USD)", days, a.per_day.map((d) => d.cost_usd), money, "cost"),
          hbars("chart-repo-cost", "Cost per repo", a.per_repo, "repo", (r) => r.cost_usd, money),
          hbars("chart-agent-success", "Success rate per agent type", a.per_agent, "agent_type", (r) => r.success_rate || 0, pct)),
        el("section", { class: "panel" }, el("h2", {}, "Per repo"), groupTable(a.per_repo, "repo", "Repo")),
        el("section", { class: "panel" }, el("h2", {}, "Per agent type"), groupTable(a.per_agent, "agent_type", "Agent type")),
        el("section", { class: "panel" }, el("h2", {}, "Review rounds per workflow"),
          a.workflows.length ? el("div", { class: "table-wrap" }, el("table", { class: "grid", id: "workflow-rounds" },
            el("thead", {}, el("tr", {}, ["Workflow", "Runs", "Completed", "Failed", "Approved", "Mean rounds", "Most rounds"].map((h) => el("th", { scope: "col" }, h)))),
            el("tbody", {}, a.workflows.map((w) => el("tr", { dataset: { workflow: w.name } }, el("td", {}, w.name), el("td", {}, String(w.runs)),
              el("td", {}, String(w.completed)), el("td", {}, String(w.failed)), el("td", {}, String(w.approved)),
              el("td", {}, String(w.avg_review_rounds)), el("td", {}, String(w.max_review_rounds))))))) : el("p", { class: "empty" }, "No workflow runs.")));
    }
    F.every(10000, load);
  });
})();
