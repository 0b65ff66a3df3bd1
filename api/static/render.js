// Readable work: agent text as a small Markdown subset and tool calls by kind. Everything here
// is built from text nodes (el() and textContent): agent text is never parsed as HTML, and a
// link is made only for an http(s) URL (F.link), so markup an agent writes stays inert.
"use strict";

(() => {
  const { el } = F;

  // ---- Markdown subset: paragraphs, headings, fenced code, lists, `code`, **strong**, *em*, [links](https://…)
  const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*|_[^_\n]+_)|\[([^\]\n]+)\]\(([^)\s]+)\)/g;
  function inline(text) {
    const out = [];
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[1]) out.push(el("code", {}, m[1].slice(1, -1)));
      else if (m[2]) out.push(el("strong", {}, m[2].slice(2, -2)));
      else if (m[3]) out.push(el("em", {}, m[3].slice(1, -1)));
      else out.push(F.link(m[5], m[4]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  F.markdown = (text) => {
    const root = el("div", { class: "md" });
    const lines = String(text || "").split("\n");
    let para = [];
    let list = null;
    const flush = () => {
      if (para.length) root.append(el("p", {}, inline(para.join(" "))));
      para = [];
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = /^\s*```(\S*)\s*$/.exec(line);
      if (fence) {
        flush(); list = null;
        const code = [];
        for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) code.push(lines[i]);
        root.append(el("pre", { class: "md-code" }, el("code", {}, code.join("\n"))));
        continue;
      }
      const item = /^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/.exec(line);
      if (item) {
        flush();
        const tag = item[1] ? "ol" : "ul";
        if (!list || list.tagName.toLowerCase() !== tag) { list = el(tag, {}); root.append(list); }
        list.append(el("li", {}, inline(item[2])));
        continue;
      }
      const head = /^(#{1,4})\s+(.*)$/.exec(line);
      if (head) { flush(); list = null; root.append(el("p", { class: `md-h md-h${head[1].length}` }, inline(head[2]))); continue; }
      if (!line.trim()) { flush(); list = null; continue; }
      list = null;
      para.push(line.trim());
    }
    flush();
    return root;
  };

  // ---- protocol lines: what they mean, not their JSON ----------------------------------------
  F.protocolOf = (line) => {
    const s = line.trim().replace(/^`{1,3}(?:json)?|`{1,3}$/g, "").trim();
    if (!(s.startsWith("{") && s.endsWith("}"))) return null;
    try {
      const o = JSON.parse(s);
      return o && ["question", "message", "learning"].includes(o.type) ? o : null;
    } catch { return null; }
  };
  F.protocolCard = (o) => {
    if (o.type === "question") {
      return el("div", { class: "proto proto-question" }, el("strong", {}, "Asked: "), String(o.question || ""),
        Array.isArray(o.options) && o.options.length ? el("span", { class: "muted" }, ` (${o.options.map(String).join(" · ")})`) : null);
    }
    if (o.type === "message") {
      return el("div", { class: "proto proto-message" }, el("strong", {}, `Board message${o.to ? ` to ${o.to}` : ""}: `), String(o.content || o.message || ""));
    }
    return el("div", { class: "proto proto-learning" }, el("strong", {}, "Learned: "), String(o.content || o.learning || ""));
  };
  // agent text: protocol lines become cards, the rest Markdown
  F.agentText = (text) => {
    const out = el("div", { class: "agent-text" });
    let chunk = [];
    const flush = () => { if (chunk.join("").trim()) out.append(F.markdown(chunk.join("\n"))); chunk = []; };
    for (const line of String(text || "").split("\n")) {
      const o = F.protocolOf(line);
      if (o) { flush(); out.append(F.protocolCard(o)); } else chunk.push(line);
    }
    flush();
    return out;
  };

  // ---- tool calls ------------------------------------------------------------------------
  // `Name: {json input}` as the log stores it (the input may be clipped, so not JSON: shown raw)
  F.parseTool = (content) => {
    const i = content.indexOf(": ");
    const name = i < 0 ? content : content.slice(0, i);
    let input = null;
    try { input = JSON.parse(content.slice(i + 2)); } catch { input = null; }
    return { name, input, raw: i < 0 ? "" : content.slice(i + 2) };
  };
  const str = (v) => (typeof v === "string" ? v : "");
  // a text's lines as a diff counts them: a final newline ends the last line, it does not start an
  // empty one ("a\n" is one line, "a\n\n" two, the second blank; "" none)
  const linesOf = (text) => {
    const s = str(text);
    return s ? s.replace(/\n$/, "").split("\n") : [];
  };
  function miniDiff(oldText, newText) {
    const pre = el("pre", { class: "mini-diff" });
    for (const l of linesOf(oldText).slice(0, 30)) pre.append(el("span", { class: "pl pl-del" }, `-${l}`), "\n");
    for (const l of linesOf(newText).slice(0, 30)) pre.append(el("span", { class: "pl pl-add" }, `+${l}`), "\n");
    return pre;
  }
  F.toolView = (tool) => {
    const { name, input, raw } = tool;
    const inp = input && typeof input === "object" ? input : {};
    const head = el("span", { class: "tool-name" }, name);
    if (name === "Bash") {
      return el("div", { class: "tool tool-bash" }, head, " ", el("code", { class: "tool-cmd" }, `$ ${str(inp.command) || raw}`),
        el("div", { class: "tool-out" }));
    }
    if (name === "Edit" || name === "MultiEdit") {
      const edits = Array.isArray(inp.edits) ? inp.edits : [inp];
      return el("div", { class: "tool tool-edit" }, head, " ", el("code", { class: "tool-path" }, str(inp.file_path)),
        edits.map((e) => miniDiff(e.old_string, e.new_string)), el("div", { class: "tool-out" }));
    }
    if (name === "Write") {
      return el("div", { class: "tool tool-write" }, head, " ", el("code", { class: "tool-path" }, str(inp.file_path)),
        el("details", {}, el("summary", {}, `${linesOf(inp.content).length} lines`), miniDiff("", inp.content)), el("div", { class: "tool-out" }));
    }
    if (name === "Read" || name === "Grep" || name === "Glob") {
      const what = name === "Read" ? str(inp.file_path) : `${str(inp.pattern)}${inp.path ? ` in ${str(inp.path)}` : ""}`;
      return el("div", { class: `tool tool-${name.toLowerCase()}` }, head, " ", el("code", { class: "tool-path" }, what), " ",
        el("span", { class: "tool-count muted" }), el("div", { class: "tool-out" }));
    }
    return el("div", { class: "tool" }, head, el("details", {}, el("summary", {}, "input"), el("pre", { class: "log-text" }, input ? JSON.stringify(input, null, 2) : raw)),
      el("div", { class: "tool-out" }));
  };
  const FIRST_LINES = 6;
  // a tool's result goes under its call: the first lines, the rest behind a <details>
  F.toolResult = (toolEl, name, text) => {
    const out = toolEl.querySelector(".tool-out");
    const lines = text.replace(/\n$/, "").split("\n");
    const count = toolEl.querySelector(".tool-count");
    if (count) {
      const n = text.trim() ? lines.length : 0;
      count.textContent = name === "Read" ? `${n} lines` : `${n} match${n === 1 ? "" : "es"}`;
      out.append(el("details", {}, el("summary", {}, "output"), el("pre", { class: "log-text" }, text)));
      return;
    }
    out.append(el("pre", { class: `log-text tool-result${text.startsWith("error: ") ? " error-text" : ""}` }, lines.slice(0, FIRST_LINES).join("\n")));
    if (lines.length > FIRST_LINES) {
      out.append(el("details", {}, el("summary", {}, `${lines.length - FIRST_LINES} more lines`),
        el("pre", { class: "log-text" }, lines.slice(FIRST_LINES).join("\n"))));
    }
  };

  // ---- one log entry ----------------------------------------------------------------------
  // pending: task id -> tool calls waiting for their results (results come back in call order)
  F.logItem = (entry, pending, list) => {
    const kind = entry.kind;
    const time = el("time", { class: "log-time", datetime: entry.created_at }, F.fmtTime(entry.created_at));
    const queue = pending.get(entry.task_id) || [];
    pending.set(entry.task_id, queue);
    if (kind === "tool_use") {
      const tool = F.parseTool(entry.content);
      const view = F.toolView(tool);
      queue.push({ view, name: tool.name });
      return el("li", { class: `log log-tool_use tool-${tool.name.toLowerCase()}`, dataset: { id: entry.id } }, time, el("span", { class: "log-kind" }, "tool"), view);
    }
    if (kind === "tool_result") {
      const call = queue.shift();
      if (call) { F.toolResult(call.view, call.name, entry.content); return null; }
      return el("li", { class: "log log-tool_result", dataset: { id: entry.id } }, time, el("span", { class: "log-kind" }, "result"),
        el("details", {}, el("summary", {}, "output"), el("pre", { class: "log-text" }, entry.content)));
    }
    if (kind === "assistant") {
      return el("li", { class: "log log-assistant", dataset: { id: entry.id, text: "" } }, time, el("span", { class: "log-kind" }, "agent"), F.agentText(entry.content));
    }
    if (kind === "result") {
      // "<subtype> turns=N cost=$X\n<final reply>": the reply is shown once, where the agent said it
      const [summary, ...rest] = entry.content.split("\n");
      const reply = rest.join("\n").trim();
      const said = [...list.querySelectorAll(".log-assistant")].reverse().find((li) => li.querySelector(".agent-text") && li._text === undefined && li.textContent.includes(reply.slice(0, 200)));
      if (said && reply) said.classList.add("log-final");
      return el("li", { class: "log log-result", dataset: { id: entry.id } }, time, el("span", { class: "log-kind" }, "run ended"),
        el("div", {}, el("p", { class: "run-summary" }, summary.replace(/^(\w+) turns=(\S+) cost=\$(\S+)$/, (_, st, n, c) => `${st} · ${n} turns · $${Number(c).toFixed(4)}`)),
          !said && reply ? el("div", { class: "final-reply" }, el("strong", {}, "Final reply"), F.agentText(reply)) : null));
    }
    return el("li", { class: `log log-${kind}`, dataset: { id: entry.id } },
      time, el("span", { class: "log-kind" }, kind), el("pre", { class: "log-text" }, entry.content));
  };
})();
