// Plume cockpit: draws each view from the gateway's JSON API; live updates by server-sent events.
// Every asset comes from the gateway itself; no framework.
"use strict";
(function () {
  const WORDS = window.PLUME_WORDS;
  let lang = (document.cookie.match(/(?:^|; )plume_lang=(zh|en)/) || [])[1] || window.PLUME_DEFAULT_LANG;
  const path = location.pathname;
  const page = path === "/login" ? "login" : path === "/" ? "overview" : path.startsWith("/device/") ? "device"
    : path.slice(1);
  const view = document.getElementById("view");
  let last = null;        // data of the current view
  let overview = null;    // latest overview (header, alarm count)
  let fetchedAt = 0;

  function t(key) { return (WORDS[lang] && WORDS[lang][key]) || key; }
  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
      (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function num(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v !== "number") return esc(v);
    if (Number.isInteger(v)) return String(v);
    return String(parseFloat(v.toPrecision(6)));
  }
  function pct(r) { return r === null || r === undefined ? "—" : (r * 100).toFixed(r === 1 ? 0 : 1) + " %"; }
  function stateBadge(s) { return `<span class="state" data-state="${esc(s)}">${esc(t(s))}</span>`; }
  function flag(f) { return `<span class="flag flag-${esc(f)}" title="${esc(t("flag_" + f))}">${esc(f)}</span>`; }

  async function api(url, body) {
    const opts = body === undefined ? {} : {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
    const r = await fetch(url, opts);
    if (r.status === 401 && page !== "login") { location.href = "/login"; throw new Error("log in"); }
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  }

  // --- header ------------------------------------------------------------------------------------------------
  let clockBase = null; // [server now ms, offset ms, zone mark, performance.now()]
  function setSite(site) {
    document.getElementById("site-name").textContent = site.name;
    document.title = site.name + " · " + t("title");
    const m = /UTC([+-])(\d\d):(\d\d)/.exec(site.offset);
    const off = m ? (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) * 60000 : 0;
    clockBase = [site.now, off, site.zone, performance.now()];
    tick();
  }
  function tick() {
    if (!clockBase) return;
    const d = new Date(clockBase[0] + clockBase[1] + (performance.now() - clockBase[3]));
    const p = (n) => String(n).padStart(2, "0");
    const s = `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ` +
      `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
    const el = document.getElementById("clock");
    el.textContent = `${t("local_time")} ${s} (${clockBase[2]})`;
    el.dataset.zone = clockBase[2];
  }
  setInterval(tick, 1000);

  let liveUp = null;  // null before the stream opens, then true/false
  function liveLabel() {
    const status = document.getElementById("live");
    if (liveUp === null) return;
    status.textContent = liveUp ? "● " + t("live") : t("reconnecting");
    status.className = liveUp ? "live" : "live down";
  }
  function chrome() {
    liveLabel();
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.getElementById("lang").textContent = t("language");
    const out = document.getElementById("logout");
    out.textContent = t("logout");
    const nav = document.getElementById("nav");
    nav.hidden = page === "login";
    out.hidden = page === "login";
    for (const a of nav.querySelectorAll("a")) {
      const key = a.dataset.page;
      a.classList.toggle("here", key === page);
      let label = esc(t(key));
      if (key === "alarms" && overview && overview.alarms.active)
        label += `<span class="count" id="alarm-count">${overview.alarms.active}</span>`;
      a.innerHTML = label;
    }
    tick();
  }
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    document.cookie = `plume_lang=${lang}; path=/; max-age=31536000; samesite=strict`;
    chrome();
    render();
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST" });
    location.href = "/login";
  });

  // --- views -------------------------------------------------------------------------------------------------
  function legend(flags) {
    return `<div class="legend" id="legend"><strong>${esc(t("legend"))}:</strong>` +
      flags.map((f) => `<span>${flag(f)} ${esc(t("flag_" + f))}</span>`).join("") + "</div>";
  }
  function deviceCard(d) {
    const rows = d.values.map((v) => `<tr data-channel="${esc(v.channel)}" data-value="${esc(v.value)}" ` +
      `data-flag="${esc(v.flag)}"><td>${esc(v.channel)}</td><td class="v">${num(v.value)}</td>` +
      `<td>${esc(v.unit)}</td><td>${flag(v.flag)}</td></tr>`).join("");
    return `<section class="card device" data-device="${esc(d.name)}" data-state="${esc(d.state)}" ` +
      `data-last-poll="${esc(d.last_poll)}"><h3><a href="/device/${encodeURIComponent(d.name)}">${esc(d.name)}</a>` +
      `${stateBadge(d.state)}</h3><div class="meta">${esc(t("bus"))} ${esc(d.bus)} · ${esc(d.profile)} · ` +
      `${esc(t("last_poll"))} <span class="last-poll">${esc(d.last_poll_local || t("never"))}</span> · ` +
      `${esc(t("success_rate"))} <span class="rate">${pct(d.success_rate)}</span></div>` +
      (d.last_error ? `<div class="err">${esc(d.last_error)}</div>` : "") +
      `<table><thead><tr><th>${esc(t("channel"))}</th><th class="v">${esc(t("value"))}</th>` +
      `<th>${esc(t("unit"))}</th><th>${esc(t("flag"))}</th></tr></thead><tbody>${rows}</tbody></table></section>`;
  }
  function renderOverview(o) {
    view.innerHTML = `<h2>${esc(t("devices"))} (${o.devices.length})</h2>` + legend(o.flags) +
      `<div class="grid" id="devices">${o.devices.map(deviceCard).join("")}</div>`;
  }
  function pictures(list, small) {  // an alarm's camera pictures, or why one is missing
    return (list || []).map((p) => p.url
      ? `<figure class="snapshot${small ? " small" : ""}" data-camera="${esc(p.camera)}"><a href="${esc(p.url)}" ` +
        `target="_blank"><img src="${esc(p.url)}" alt="${esc(t("picture"))} ${esc(p.camera)}"></a>` +
        (small ? "" : `<figcaption>${esc(t("picture"))}: ${esc(t("camera"))} ${esc(p.camera)} · ` +
        `${esc(p.taken_local)}</figcaption>`) + "</figure>"
      : `<div class="meta no-picture" data-camera="${esc(p.camera)}">${esc(t("no_picture"))}: ` +
        `${esc(t("camera"))} ${esc(p.camera)} ${esc(p.why[lang] || p.why.en)}${small ? "" : " (" + esc(p.detail) + ")"}` +
        "</div>").join("");
  }
  function renderAlarms(a) {
    const active = a.active.length ? a.active.map((x) => `<section class="card alarm" data-alarm="${esc(x.alarm_id)}" ` +
      `data-acked="${x.acked}"><h3>${esc(x.title || x.rule)} ${x.acked ? `<span class="state" data-state="online">` +
      `${esc(t("acked"))} ${esc(x.acked_by)}</span>` : ""}</h3><div class="meta">${esc(t("rule"))} ${esc(x.rule)} · ` +
      `${esc(x.device)} ${esc(x.channel)} · ${esc(t("since"))} ${esc(x.start_local)}</div><table><tr>` +
      `<th>${esc(t("value"))}</th><td class="v">${num(x.value)} ${esc(x.unit)}</td><th>${esc(t("limit"))}</th>` +
      `<td class="v">${num(x.limit)} ${esc(x.unit)}</td></tr></table><div class="meta">${esc(x.message)}</div>` +
      pictures(x.pictures, false) +
      (x.acked ? "" : `<form class="ack"><input name="by" required placeholder="${esc(t("by"))}">` +
      `<input name="comment" placeholder="${esc(t("comment"))}"><button class="act" type="submit">` +
      `${esc(t("acknowledge"))}</button><span class="ack-result"></span></form>`) + "</section>").join("")
      : `<p id="no-alarms">${esc(t("no_alarms"))}</p>`;
    const ev = a.events.map((e) => `<tr data-event="${esc(e.event_id)}"><td>${esc(e.ts_local)}</td>` +
      `<td>${esc(t(e.type))}</td><td>${esc(e.rule)}</td><td>${esc(e.device)}</td><td>${esc(e.message)}` +
      `${e.by ? " — " + esc(e.by) : ""}${pictures(e.pictures, true)}</td></tr>`).join("");
    view.innerHTML = `<h2>${esc(t("active_alarms"))} (${a.active.length})</h2><div class="grid" id="active">${active}` +
      `</div><h2>${esc(t("last_events"))}</h2><div class="card"><table id="events"><thead><tr><th>` +
      `${esc(t("time"))} (${esc(a.site.zone)})</th><th>${esc(t("event"))}</th><th>${esc(t("rule"))}</th><th>` +
      `${esc(t("device"))}</th><th>${esc(t("message"))}</th></tr></thead><tbody>${ev}</tbody></table></div>`;
    for (const form of view.querySelectorAll("form.ack")) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const id = form.closest("[data-alarm]").dataset.alarm;
        const out = form.querySelector(".ack-result");
        try {
          await api("/api/alarms/ack", { alarm_id: id, by: form.by.value, comment: form.comment.value });
          out.textContent = t("ack_sent");
          out.className = "ack-result ok";
          setTimeout(load, 1500);
        } catch (err) {
          out.textContent = err.message;
          out.className = "ack-result err";
        }
      });
    }
  }
  function age(s) { return s === null || s === undefined ? "—" : s < 120 ? `${s.toFixed(1)} ${t("s")}` : `${(s / 60).toFixed(1)} min`; }
  function renderDelivery(d) {
    const rows = d.sinks.map((s) => `<tr data-sink="${esc(s.name)}" data-connected="${s.connected}"><td>${esc(s.name)}` +
      `</td><td>${esc(s.type)}</td><td>${esc(s.target)}</td><td>${s.connected ? `<span class="ok">${esc(t("connected"))}` +
      `</span>` : `<span class="err">${esc(t("disconnected"))}</span>`}</td><td class="v">${s.depth}</td>` +
      `<td class="v">${age(s.age_s)}</td><td>${esc(s.last_delivered_local || t("never"))}</td>` +
      `<td class="err">${esc(s.last_error)}</td></tr>`).join("");
    const lg = d.log;
    const ratio = lg.used_ratio === null ? 0 : Math.min(1, lg.used_ratio);
    view.innerHTML = `<h2>${esc(t("delivery"))}</h2><div class="card"><table id="sinks"><thead><tr><th>` +
      `${esc(t("sink"))}</th><th>${esc(t("type"))}</th><th>${esc(t("target"))}</th><th>${esc(t("state"))}</th>` +
      `<th class="v">${esc(t("backlog"))}</th><th class="v">${esc(t("backlog_age"))}</th><th>` +
      `${esc(t("last_delivered"))} (${esc(d.site.zone)})</th><th>${esc(t("last_error"))}</th></tr></thead><tbody>${rows}` +
      `</tbody></table></div><h2>${esc(t("log"))}</h2><div class="card" id="log"><div>${esc(t("log_size"))} ` +
      `${lg.used_mb} MB / ${esc(t("disk_cap"))} ${lg.max_disk_mb} MB · ${lg.readings} ${esc(t("readings"))} · ` +
      `${esc(t("dropped"))} ${lg.dropped}</div><div class="bar"><div></div></div></div>`;
    for (const bar of view.querySelectorAll(".bar > div")) bar.style.width = (ratio * 100).toFixed(1) + "%";
  }
  function renderDevice(d) {
    const dev = d.device;
    const plan = d.plan.frames ? `<p>serial frames</p>` : `<table id="plan"><thead><tr><th>fc</th><th>start</th>` +
      `<th>count</th><th>${esc(t("channel"))}</th></tr></thead><tbody>` + d.plan.requests.map((r) =>
      `<tr><td>${r.function}</td><td>${r.address}</td><td>${r.count}</td><td>${esc(r.channels.join(" "))}</td></tr>`)
      .join("") + `</tbody></table><div class="meta">${d.plan.requests.length} ${esc(t("requests"))}, ${d.plan.bytes} ` +
      `${esc(t("bytes"))}${d.plan.wire_ms === null ? "" : `, ${esc(t("wire_time"))} ${d.plan.wire_ms} ms`}</div>`;
    const errs = d.errors.length ? `<table id="errors"><thead><tr><th>${esc(t("time"))}</th><th>${esc(t("cause"))}</th>` +
      `<th>${esc(t("hint"))}</th></tr></thead><tbody>` + d.errors.map((e) => `<tr><td>${esc(e.last_local)} ×${e.count}` +
      `</td><td>${esc(e["cause_" + lang])}<div class="err">${esc(e.error)}</div></td><td>${esc(e["hint_" + lang])}</td>` +
      `</tr>`).join("") + "</tbody></table>" : `<p>${esc(t("none"))}</p>`;
    const charts = d.charts.length ? d.charts.map((c) => `<figure class="chart" data-channel="${esc(c.channel)}">` +
      `<figcaption>${esc(c.channel)} (${esc(c.unit)})</figcaption>${c.svg}</figure>`).join("") : `<p>${esc(t("no_data"))}</p>`;
    view.innerHTML = `<h2>${esc(t("device"))} ${esc(dev.name)} ${stateBadge(dev.state)}</h2><div class="card"><div ` +
      `class="meta">${esc(t("bus"))} ${esc(dev.bus)} · ${esc(t("address"))} ${d.address} · ${esc(dev.profile)} · ` +
      `${esc(t("interval"))} ${d.interval_s} ${esc(t("s"))} · ${esc(t("last_poll"))} ${esc(dev.last_poll_local)} ` +
      `(${esc(d.site.zone)}) · ${esc(t("success_rate"))} ${pct(dev.success_rate)}</div></div>` +
      `<h2>${esc(t("last_hour"))}</h2><div class="charts" id="charts">${charts}</div>` +
      `<h2>${esc(t("device_errors"))}</h2><div class="card">${errs}</div><h2>${esc(t("plan"))}</h2>` +
      `<div class="card">${plan}</div>`;
  }
  function renderCommissioning(o) {
    view.innerHTML = `<h2>${esc(t("commissioning"))}</h2><div class="grid">` + o.devices.map((d) =>
      `<section class="card" data-device="${esc(d.name)}"><h3>${esc(d.name)} ${stateBadge(d.state)}</h3>` +
      `<button class="act read" type="button">${esc(t("read_now"))}</button><div class="result"></div></section>`)
      .join("") + "</div>";
    for (const b of view.querySelectorAll("button.read")) {
      b.addEventListener("click", async () => {
        const card = b.closest("[data-device]");
        const out = card.querySelector(".result");
        out.textContent = t("reading");
        try {
          const r = await api("/api/read/" + encodeURIComponent(card.dataset.device), {});
          out.innerHTML = `<div class="meta" data-ts="${r.ts}">${esc(r.ts_local)} ` +
            `${r.error ? `<span class="err">${esc(r.error)}</span>` : ""} ${esc(r.note)}</div><table>` +
            Object.entries(r.values).map(([ch, v]) => `<tr data-channel="${esc(ch)}" data-value="${esc(v.value)}"><td>` +
            `${esc(ch)}</td><td class="v">${num(v.value)}</td><td>${esc(v.unit)}</td><td>${flag(v.flag)}</td></tr>`)
            .join("") + "</table>";
        } catch (err) { out.innerHTML = `<span class="err">${esc(err.message)}</span>`; }
      });
    }
  }
  function renderLogin() {
    view.innerHTML = `<form class="card login" id="login-form"><h2>${esc(t("title"))}</h2><label>${esc(t("password"))}` +
      `<input type="password" id="password" name="password" autocomplete="current-password" autofocus></label>` +
      `<button class="act" id="login" type="submit">${esc(t("login"))}</button><div id="login-error" class="err">` +
      `</div></form>`;
    document.getElementById("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const r = await fetch("/api/login", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ password: document.getElementById("password").value }) });
      if (r.ok) location.href = "/";
      else document.getElementById("login-error").textContent = t("wrong_password");
    });
  }

  function render() {
    if (page === "login") return renderLogin();
    if (!last) return;
    if (page === "overview") renderOverview(last);
    else if (page === "alarms") renderAlarms(last);
    else if (page === "delivery") renderDelivery(last);
    else if (page === "device") renderDevice(last);
    else if (page === "commissioning") renderCommissioning(last);
  }

  async function load() {
    const url = page === "overview" || page === "commissioning" ? "/api/overview"
      : page === "device" ? "/api/device/" + encodeURIComponent(decodeURIComponent(path.slice(8))) : "/api/" + page;
    last = await api(url);
    fetchedAt = Date.now();
    setSite(last.site);
    if (page === "overview" || page === "commissioning") overview = last;
    chrome();
    render();
  }

  function live() {
    const es = new EventSource("/api/events");
    es.addEventListener("open", () => { liveUp = true; liveLabel(); });
    es.addEventListener("error", () => {
      liveUp = false;
      liveLabel();
      fetch("/api/overview").then((r) => { if (r.status === 401) location.href = "/login"; }).catch(() => {});
    });
    es.addEventListener("overview", (e) => {
      const o = JSON.parse(e.data);
      const alarmsChanged = overview && overview.alarms.version !== o.alarms.version;
      overview = o;
      setSite(o.site);
      if (page === "overview") { last = o; renderOverview(o); }
      else if (page === "alarms" && alarmsChanged) load();
      else if ((page === "delivery" && Date.now() - fetchedAt > 5000) ||
               (page === "device" && Date.now() - fetchedAt > 15000)) load();
      chrome();
    });
  }

  chrome();
  if (page === "login") renderLogin();
  else load().then(live).catch((e) => { view.innerHTML = `<p class="err">${esc(e.message)}</p>`; });
})();
