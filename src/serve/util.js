// The helpers both pages' scripts share (page.html and fleet.html): page.rs puts this
// file in place of the `// util.js` line of each page's script.

// el(tag, attrs, ...kids): an element, its attributes (class, text, others), its children.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) {
    const v = attrs[k];
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of kids.flat(9)) if (c != null && c !== false) e.append(c);
  return e;
}

/* ---------- formatting ---------- */
// One formatter each: toLocaleString builds a new one per call, too slow for 1,000 rows.
const nf = o => { try { return new Intl.NumberFormat("fr-FR", o); } catch (e) { return { format: x => String(x) }; } };
const NF0 = nf({}), NF1 = nf({ maximumFractionDigits: 1 }), NF2 = nf({ maximumFractionDigits: 2 });
const num = n => NF0.format(Number(n || 0));

// A size in French units ("512 o", "1,5 Ko", "2,25 Mo"); `fallback` (else "—") when
// `n` is not a number.
function bytes(n, fallback) {
  if (typeof n !== "number" || !isFinite(n)) return fallback || "—";
  if (n < 1024) return n + " o";
  const u = ["Ko", "Mo", "Go", "To"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return (n < 10 ? NF2 : NF1).format(n) + " " + u[i];
}

// wallClock(day) is wall(s): "2024-12-18 03:00:00" or "2024-12-18T03:00:00+01:00" as
// the wall time it names (the Pi's or the site's, as it wrote it, whatever the zone of
// this device), "18 déc. 2024 à 03:00"; `day`, Intl options for the day (a weekday…).
function wallClock(day) {
  let fmt = null;
  try { fmt = new Intl.DateTimeFormat("fr-FR", Object.assign({ timeZone: "UTC", day: "numeric", month: "short", year: "numeric" }, day)); } catch (e) { fmt = null; }
  return s => {
    const m = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)/.exec(s || "");
    if (!m) return s || "—";
    const d = new Date(Date.UTC(+m[1], m[2] - 1, +m[3]));
    return (fmt ? fmt.format(d) : m[3] + "/" + m[2] + "/" + m[1]) + " à " + m[4] + ":" + m[5];
  };
}

// agoSaying(future) is ago(unix): how long before now the Unix time `unix` (seconds)
// was, in words; "" for none. The one rule for a time ahead of this device's clock:
// up to one hour ahead is "à l'instant" (clocks drift, and the daemon itself still
// counts a success up to an hour ahead as a fresh one: FUTURE_SLACK, docs/format.md
// "The schedule"); more than an hour ahead, a clock is wrong and `future` says which.
function agoSaying(future) {
  return unix => {
    if (unix == null || isNaN(unix)) return "";
    const s = Date.now() / 1000 - unix;
    if (s < -3600) return future;
    if (s < 60) return "à l'instant";
    if (s < 3600) return "il y a " + Math.floor(s / 60) + " min";
    if (s < 48 * 3600) return "il y a " + Math.floor(s / 3600) + " h";
    return "il y a " + Math.floor(s / 86400) + " jours";
  };
}

/* ---------- the token ---------- */
// bearer(key): the API token (API_TOKEN) of this tab, kept in sessionStorage under
// `key`. The page's #tokdlg dialog (#tokform, #tok, #tok-err) asks for it; its #logout
// button shows while one is held.
function bearer(key) {
  const q = s => document.querySelector(s);
  let token = "", wait = null;
  try { token = sessionStorage.getItem(key) || ""; } catch (e) { /* storage off */ }
  const keep = v => {
    token = v;
    try { if (v) sessionStorage.setItem(key, v); else sessionStorage.removeItem(key); } catch (e) { /* kept in memory only */ }
    q("#logout").hidden = !v;
  };
  // Asks for a token; every caller waiting meanwhile gets the same answer.
  function ask(msg) {
    if (wait) return wait;
    wait = new Promise(resolve => {
      const d = q("#tokdlg"), err = q("#tok-err"), input = q("#tok");
      err.textContent = msg || ""; err.hidden = !msg;
      input.value = "";
      q("#tokform").onsubmit = ev => {
        ev.preventDefault();
        const v = input.value.trim();
        if (!v) { input.focus(); return; }
        keep(v);
        d.close();
        wait = null;
        resolve();
      };
      if (!d.open) d.showModal();
      input.focus();
    });
    return wait;
  }
  q("#logout").hidden = !token;
  q("#tokdlg").addEventListener("cancel", e => e.preventDefault()); // nothing works without it
  return {
    get value() { return token; },
    forget() { keep(""); },
    // A 401 to a request sent with the token `sent`: unless another answer already
    // replaced it, forget it and ask for one.
    async refused(sent) {
      if (token !== sent) return;
      keep("");
      await ask(sent ? "Ce jeton a été refusé. Vérifiez-le et réessayez." : "");
    }
  };
}
