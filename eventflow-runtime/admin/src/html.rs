//! HTML for the pages: escaping, the layout, its style sheet and its script (embedded:
//! nothing is built or fetched at install time or at run time).

use std::fmt::Write as _;

/// `text` with `& < > " '` escaped, safe in element content and in quoted attributes.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped for a URL's query value.
pub(crate) fn url_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A time in milliseconds since the Unix epoch, as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn time(ms: u64) -> String {
    match chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{ms} ms"),
    }
}

/// Which page of the navigation is open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Handlers,
    DeadLetters,
    Delayed,
    Schedules,
    Workers,
}

/// A whole page: the navigation, `body`, the style sheet and the script. `prefix` is
/// where the router is mounted (`""` at the root), so that the app works wherever it is
/// nested.
pub(crate) fn page(title: &str, nav: Nav, read_only: bool, prefix: &str, body: &str) -> String {
    let link = |to: Nav, href: &str, label: &str| {
        let cls = if to == nav { " class=\"on\"" } else { "" };
        format!("<a href=\"{prefix}/{href}\"{cls}>{label}</a>")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · eventflow</title><style>{STYLE}</style></head>\
         <body data-read-only=\"{read_only}\"><header><span class=\"brand\">eventflow</span><nav>{}{}{}{}{}{}</nav>\
         <span class=\"live\" id=\"live\" title=\"refreshes every 5 seconds\">live</span></header>\
         <main id=\"main\">{body}</main><script>{SCRIPT}</script></body></html>",
        link(Nav::Overview, "", "Overview"),
        link(Nav::Handlers, "handlers", "Handlers"),
        link(Nav::DeadLetters, "dead-letters", "Dead letters"),
        link(Nav::Delayed, "delayed", "Delayed"),
        link(Nav::Schedules, "schedules", "Schedules"),
        link(Nav::Workers, "workers", "Workers"),
        title = esc(title),
    )
}

const STYLE: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2433;--mute:#667085;--line:#e4e7ec;--ok:#12805c;--bad:#c0362c;--warn:#b54708;--acc:#3555d4}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;align-items:center;gap:24px;padding:10px 24px;background:#111827;color:#fff}
.brand{font-weight:700;letter-spacing:.3px}nav a{color:#cbd5e1;text-decoration:none;margin-right:16px;padding:4px 0}
nav a.on,nav a:hover{color:#fff;border-bottom:2px solid #7c9cff}.live{margin-left:auto;font-size:12px;color:#86efac}
main{max-width:1200px;margin:0 auto;padding:20px 24px}h1{font-size:20px;margin:4px 0 16px}h2{font-size:15px;margin:20px 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .k{color:var(--mute);font-size:12px;text-transform:uppercase;letter-spacing:.4px}.card .v{font-size:22px;font-weight:600;margin-top:2px}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden}
th,td{text-align:left;padding:8px 10px;border-bottom:1px solid var(--line);vertical-align:top}th{background:#f9fafb;color:var(--mute);font-weight:600;font-size:12px}
tr:last-child td{border-bottom:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.err{color:var(--bad);max-width:420px;overflow-wrap:anywhere}.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}pre{background:#0f172a;color:#e2e8f0;padding:12px;border-radius:8px;overflow:auto;max-height:480px}
form.filter{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 12px}input,select{padding:6px 8px;border:1px solid var(--line);border-radius:6px;font:inherit}
button,.button{padding:5px 10px;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer;font:inherit;color:var(--ink);text-decoration:none}
button.primary{background:var(--acc);color:#fff;border-color:var(--acc)}button.danger{color:var(--bad);border-color:#f3c1bc}
button:disabled{opacity:.5;cursor:default}.bar{display:flex;gap:8px;align-items:center;margin:12px 0}.muted{color:var(--mute)}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px}.legend span{margin-right:14px;font-size:12px}
dl{display:grid;grid-template-columns:160px 1fr;gap:6px 12px;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px}dt{color:var(--mute)}dd{margin:0;overflow-wrap:anywhere}
#flash{min-height:20px;margin:8px 0}
"#;

/// Buttons with `data-method` and `data-url` send that request (after `data-confirm`'s
/// question, if any) and reload the page; the main part refreshes every 5 seconds unless
/// the user is typing or a request is on its way.
const SCRIPT: &str = r#"
(function(){
  var busy=false;
  document.addEventListener('click',function(ev){
    var b=ev.target.closest('button[data-url]');
    if(!b)return;
    ev.preventDefault();
    var q=b.getAttribute('data-confirm');
    if(q&&!window.confirm(q))return;
    busy=true;b.disabled=true;
    fetch(b.getAttribute('data-url'),{method:b.getAttribute('data-method')||'POST',credentials:'same-origin',headers:{'Accept':'application/json'}})
      .then(function(r){return r.json().then(function(j){return [r.ok,j];});})
      .then(function(x){
        var f=document.getElementById('flash');
        if(f){f.textContent=x[0]?(b.getAttribute('data-done')||'Done')+' '+JSON.stringify(x[1]):'Refused: '+(x[1].error||'error');f.className=x[0]?'ok':'bad';}
        var go=b.getAttribute('data-then');
        if(x[0]&&go){window.location.href=go;}else{busy=false;refresh();}
      })
      .catch(function(e){busy=false;b.disabled=false;var f=document.getElementById('flash');if(f){f.textContent='Failed: '+e;f.className='bad';}});
  });
  function refresh(){
    if(busy)return;
    var a=document.activeElement;if(a&&(a.tagName==='INPUT'||a.tagName==='SELECT'))return;
    fetch(window.location.href,{credentials:'same-origin'}).then(function(r){return r.text();}).then(function(t){
      var d=new DOMParser().parseFromString(t,'text/html');var m=d.getElementById('main');
      var flash=document.getElementById('flash');var keep=flash?flash.outerHTML:null;
      if(m&&!busy){document.getElementById('main').innerHTML=m.innerHTML;
        var f2=document.getElementById('flash');if(f2&&keep){f2.outerHTML=keep;}}
    }).catch(function(){});
  }
  setInterval(refresh,5000);
})();
"#;

/// An inline SVG line chart of three series (published, succeeded, failed per second).
pub(crate) fn chart(points: &[(u64, u64, u64)]) -> String {
    let (w, h, pad) = (1100.0f64, 180.0f64, 24.0f64);
    let max = points
        .iter()
        .map(|p| p.0.max(p.1).max(p.2))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = points.len().max(2) as f64;
    let line = |pick: &dyn Fn(&(u64, u64, u64)) -> u64, color: &str| {
        let pts: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let x = pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
                let y = h - pad - (h - 2.0 * pad) * pick(p) as f64 / max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        )
    };
    format!(
        "<div class=\"chart\"><div class=\"legend\"><span style=\"color:#3555d4\">■ published</span>\
         <span style=\"color:#12805c\">■ succeeded</span><span style=\"color:#c0362c\">■ failed attempts</span>\
         <span class=\"muted\">per second, last {} s, peak {max:.0}/s</span></div>\
         <svg id=\"rate-chart\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"events per second\">\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#e4e7ec\"/>{}{}{}</svg></div>",
        points.len(),
        line(&|p| p.0, "#3555d4"),
        line(&|p| p.1, "#12805c"),
        line(&|p| p.2, "#c0362c"),
        b = h - pad,
        r = w - pad,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_764_633_600_000), "2025-12-02 00:00:00");
    }
}
