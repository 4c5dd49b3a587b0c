//! The approver pages in a real browser: headless Chromium driven over the DevTools protocol,
//! with a virtual WebAuthn authenticator standing in for a platform passkey. Enrolment,
//! sign-in, approve and reject go through the pages; their effect is read back from the
//! service API. Screenshots of every page land in `target/screenshots/` for a person to look at.
//!
//! Without `/usr/bin/chromium` (or `CS_TEST_CHROMIUM`) the test prints `SKIPPED` and passes,
//! unless `CS_TEST_REQUIRE_CHROMIUM=1` (set by CI), which makes that a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::emulation::{
    MediaFeature, SetDeviceMetricsOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::network::DeleteCookiesParams;
use chromiumoxide::cdp::browser_protocol::page::RemoveScriptToEvaluateOnNewDocumentParams;
use chromiumoxide::cdp::browser_protocol::web_authn::{
    AddVirtualAuthenticatorParams, AuthenticatorId, AuthenticatorProtocol, AuthenticatorTransport,
    EnableParams, GetCredentialsParams, SetUserVerifiedParams, VirtualAuthenticatorOptions,
};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use common::TestApp;
use countersign::policy::Policy;
use futures_util::StreamExt;
use serde_json::{json, Value};

const XSS: &str = "</script><img src=x onerror=alert(1)>";
const DESKTOP: (i64, i64) = (1280, 900);
const PHONE: (i64, i64) = (390, 844);

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CS_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CS_TEST_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1") {
        panic!(
            "chromium not found at {} but CS_TEST_REQUIRE_CHROMIUM=1",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED the browser test: chromium not found at {}; install it (apt-get install chromium) \
         or set CS_TEST_REQUIRE_CHROMIUM=1 to make this a failure",
        path.display()
    );
    None
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server whose public origin is `http://localhost:PORT`: WebAuthn needs the page's origin
/// to be the relying party's, and an RP ID that is a domain name, not an IP address.
async fn spawn_localhost() -> (TestApp, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = common::temp_dir();
    let db = common::fresh_database(common::Backend::Sqlite, &dir)
        .await
        .unwrap();
    let origin = format!("http://localhost:{port}");
    let o = origin.clone();
    let app = common::spawn_configured(&db, dir, Policy::builtin().unwrap(), move |c| {
        c.listen = format!("127.0.0.1:{port}");
        c.public_origin = o;
    })
    .await;
    (app, origin)
}

struct Session {
    browser: Browser,
    page: Page,
    authenticator: AuthenticatorId,
    origin: String,
    shots: PathBuf,
    profile: PathBuf,
}

impl Session {
    async fn start(chrome: &Path, origin: &str) -> Session {
        let profile = common::temp_dir().join("chromium-profile");
        let config = BrowserConfig::builder()
            .chrome_executable(chrome)
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(&profile)
            .viewport(None)
            .window_size(1280, 900)
            .args([
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--lang=en-GB",
            ])
            .build()
            .unwrap();
        let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        let page = browser.new_page("about:blank").await.unwrap();
        // Every CSP violation is recorded, so a test can prove the pages never need one relaxed.
        page.evaluate_on_new_document(
            "window.__csp = []; document.addEventListener('securitypolicyviolation', \
             (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)); \
             window.__errors = []; window.addEventListener('error', (e) => window.__errors.push(String(e.message))); \
             window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));",
        )
        .await
        .unwrap();
        // A time zone other than UTC shows the local time beside the UTC one.
        page.emulate_timezone("Europe/Berlin").await.unwrap();
        page.execute(EnableParams::default()).await.unwrap();
        let options = VirtualAuthenticatorOptions::builder()
            .protocol(AuthenticatorProtocol::Ctap2)
            .transport(AuthenticatorTransport::Internal)
            .has_resident_key(true)
            .has_user_verification(true)
            .is_user_verified(true)
            .automatic_presence_simulation(true)
            .build()
            .unwrap();
        let authenticator = page
            .execute(AddVirtualAuthenticatorParams::new(options))
            .await
            .unwrap()
            .result
            .authenticator_id;
        let s = Session {
            browser,
            page,
            authenticator,
            origin: origin.to_string(),
            shots: screenshot_dir(),
            profile,
        };
        s.viewport(DESKTOP).await;
        s
    }

    async fn viewport(&self, (w, h): (i64, i64)) {
        let mobile = w < 600;
        self.page
            .execute(SetDeviceMetricsOverrideParams::new(
                w,
                h,
                if mobile { 2.0 } else { 1.0 },
                mobile,
            ))
            .await
            .unwrap();
    }

    async fn dark(&self, on: bool) {
        self.page
            .emulate_media_features(vec![MediaFeature::new(
                "prefers-color-scheme",
                if on { "dark" } else { "light" },
            )])
            .await
            .unwrap();
    }

    async fn goto(&self, path: &str) {
        self.page
            .goto(format!("{}{path}", self.origin))
            .await
            .unwrap();
        self.wait_for("document.readyState === 'complete'").await;
    }

    async fn eval<T: serde::de::DeserializeOwned>(&self, js: &str) -> T {
        self.page
            .evaluate(js)
            .await
            .unwrap_or_else(|e| panic!("evaluate {js}: {e}"))
            .into_value()
            .unwrap_or_else(|e| panic!("value of {js}: {e}"))
    }

    /// Polls a JavaScript condition; a navigation in between (the page reloads after a
    /// decision) only makes one poll fail.
    async fn wait_for(&self, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.page.evaluate(condition).await {
                if r.into_value::<bool>().unwrap_or(false) {
                    return;
                }
            }
            if Instant::now() > deadline {
                let text: String = self
                    .page
                    .evaluate("JSON.stringify({ errors: window.__errors, csp: window.__csp }) + '\\n' + (document.body ? document.body.innerText : '')")
                    .await
                    .ok()
                    .and_then(|r| r.into_value().ok())
                    .unwrap_or_default();
                panic!("timed out waiting for {condition}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, selector: &str) -> chromiumoxide::Element {
        let element = self
            .page
            .find_element(selector)
            .await
            .unwrap_or_else(|e| panic!("find {selector}: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {selector}: {e}"));
        element
    }

    async fn type_into(&self, selector: &str, text: &str) {
        self.click(selector)
            .await
            .type_str(text)
            .await
            .unwrap_or_else(|e| panic!("type into {selector}: {e}"));
    }

    async fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "(document.querySelector({sel}) || {{}}).innerText || ''",
            sel = json!(selector)
        ))
        .await
    }

    async fn page_name(&self) -> String {
        self.eval("document.body ? document.body.dataset.page || '' : ''")
            .await
    }

    async fn shot(&self, name: &str) {
        // Let fonts settle and the countdown render before the picture.
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.page
            .save_screenshot(
                ScreenshotParams::builder().full_page(true).build(),
                self.shots.join(format!("{name}.png")),
            )
            .await
            .unwrap();
    }

    /// The checks every page must pass: no CSP violation, no markup from data, no sideways
    /// scrolling at 390 px, readable contrast; and a phone-width screenshot.
    async fn check_page(&self, name: &str) {
        let violations: Vec<String> = self.eval("window.__csp || []").await;
        assert!(
            violations.is_empty(),
            "{name}: CSP violations {violations:?}"
        );
        let imgs: u32 = self.eval("document.images.length").await;
        assert_eq!(imgs, 0, "{name}: an <img> element exists");
        self.assert_contrast(name).await;
        self.shot(name).await;
        self.viewport(PHONE).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let width: i64 = self.eval("document.documentElement.scrollWidth").await;
        assert!(width <= PHONE.0, "{name}: {width} px wide at 390 px");
        self.shot(&format!("{name}-phone")).await;
        self.viewport(DESKTOP).await;
    }

    /// WCAG AA: every visible text run has at least 4.5:1 against its background (3:1 for
    /// large text), computed from the rendered colours.
    async fn assert_contrast(&self, name: &str) {
        let worst: Vec<Value> = self.eval(CONTRAST_JS).await;
        assert!(
            worst.is_empty(),
            "{name}: text below WCAG AA contrast: {}",
            serde_json::to_string_pretty(&worst).unwrap()
        );
    }

    async fn credentials(&self) -> usize {
        self.page
            .execute(GetCredentialsParams::new(self.authenticator.clone()))
            .await
            .unwrap()
            .result
            .credentials
            .iter()
            .filter(|c| c.is_resident_credential)
            .count()
    }

    async fn user_verifies(&self, yes: bool) {
        self.page
            .execute(SetUserVerifiedParams::new(self.authenticator.clone(), yes))
            .await
            .unwrap();
    }
}

/// Collects text elements whose contrast ratio is below AA; the background is the first
/// opaque one up the tree (the pages use no background images).
const CONTRAST_JS: &str = r#"(() => {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
  const lum = ({ r, g, b }) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bgOf = (el) => { for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c; } return parse(getComputedStyle(document.documentElement).backgroundColor) || { r: 255, g: 255, b: 255, a: 1 }; };
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const node = walker.currentNode; const el = node.parentElement;
    if (!el || seen.has(el) || !node.textContent.trim()) continue; seen.add(el);
    if (el.closest('[hidden], .skip, :disabled, meter')) continue;
    const r = el.getBoundingClientRect(); if (r.width === 0 || r.height === 0) continue;
    const st = getComputedStyle(el); if (st.visibility === 'hidden' || Number(st.opacity) < 0.5) continue;
    const fg = parse(st.color); const bg = bgOf(el); if (!fg) continue;
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a); const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(st.fontSize); const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push({ text: node.textContent.trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100, color: st.color, background: bg });
  }
  return bad;
})()"#;

fn payment(amount: &str, payee: &str, initiator: &str, risk: Option<Value>) -> Value {
    let mut body = json!({
        "action": "payment.transfer",
        "transaction": {
            "amount": amount,
            "currency": "EUR",
            "payee": { "name": payee, "iban": "DE89370400440532013000" },
            "reference": "INV-2026-0042"
        },
        "initiator": initiator,
        "audience": "payments-service"
    });
    if let Some(risk) = risk {
        body["risk"] = risk;
    }
    body
}

async fn api_status(app: &TestApp, id: &str) -> Value {
    let res = app.get(&format!("/v1/approvals/{id}"), &app.key).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

const PAGE_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
];

fn assert_page_headers(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let csp = h
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp} lacks {directive}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    for (name, value) in PAGE_HEADERS {
        assert_eq!(
            h.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: header {name}"
        );
    }
}

/// Headers and escaping, read over plain HTTP (no browser needed for these).
async fn http_checks(app: &TestApp, cookie: &str, xss_id: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String, cookie: Option<String>| {
        let mut req = http.get(app.url(&path));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send()
    };

    let res = get("/".into(), None).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_page_headers(&res, "sign-in page");
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    // Not signed in: the request page sends you to sign in, and back afterwards.
    let res = get(format!("/approvals/{xss_id}"), None).await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers().get("location").unwrap(),
        &format!("/?next=/approvals/{xss_id}")
    );
    let res = get("/history".into(), None).await.unwrap();
    assert_eq!(res.status(), 303);

    // Only our own pages are a `next`: no open redirect.
    let res = get("/?next=https://evil.example/".into(), Some(cookie.into()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a foreign next is ignored");

    for path in [
        "/".to_string(),
        format!("/approvals/{xss_id}"),
        "/history".to_string(),
        "/approvals/00000000-0000-4000-8000-000000000000".to_string(),
        "/enroll/not-a-token".to_string(),
    ] {
        let res = get(path.clone(), Some(cookie.into())).await.unwrap();
        assert_page_headers(&res, &path);
        let body = res.text().await.unwrap();
        assert!(!body.contains("<img"), "{path}: raw markup from data");
        assert!(
            !body.contains("<script>") && !body.contains(" style="),
            "{path}: inline script or style"
        );
    }
    let body = get(format!("/approvals/{xss_id}"), Some(cookie.into()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;")
            || body.contains("&#60;/script&#62;&#60;img src=x onerror=alert(1)&#62;"),
        "the payee is escaped"
    );
    for asset in ["/static/app.js", "/static/app.css", "/static/icon.svg"] {
        let res = get(asset.into(), None).await.unwrap();
        assert_eq!(res.status(), 200, "{asset}");
        assert_eq!(
            res.headers().get("x-content-type-options").unwrap(),
            "nosniff"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_pages_in_a_real_browser() {
    let Some(chrome) = chromium() else { return };
    let (app, origin) = spawn_localhost().await;
    let s = Session::start(&chrome, &origin).await;

    // ---- the sign-in page, before there is any passkey --------------------------------------
    s.goto("/").await;
    assert_eq!(s.page_name().await, "signin");
    s.check_page("signin").await;

    // ---- enrolment -------------------------------------------------------------------------
    let token = app
        .invite("bob", &["finance", "finance-senior", "security"])
        .await;
    s.goto(&format!("/enroll/{token}")).await;
    assert_eq!(s.page_name().await, "enroll");
    assert!(s.text("main").await.contains("bob"));
    s.check_page("enroll").await;
    // An empty name is refused in words, before any prompt.
    s.click("#enroll-button").await;
    s.wait_for("document.querySelector('#enroll-status').classList.contains('is-error')")
        .await;
    s.shot("enroll-error").await;
    s.type_into("#label", "Work laptop").await;
    s.click("#enroll-button").await;
    s.wait_for("!document.querySelector('#enroll-done').hidden")
        .await;
    assert!(s.text("#enroll-done").await.contains("Work laptop"));
    assert_eq!(s.credentials().await, 1, "one discoverable passkey");
    s.check_page("enroll-done").await;
    // The link is spent now.
    s.goto(&format!("/enroll/{token}")).await;
    assert!(s.text("main").await.contains("already used"));
    s.check_page("enroll-used").await;

    // ---- sign-in with the button -----------------------------------------------------------
    // The virtual authenticator answers passkey autofill (conditional mediation) at once, which
    // would sign in before the button is pressed; for this visit the page is told the browser
    // has no autofill, so the button's own ceremony is what signs in.
    let no_autofill = s
        .page
        .evaluate_on_new_document(
            "PublicKeyCredential.isConditionalMediationAvailable = async () => false;",
        )
        .await
        .unwrap();
    s.goto("/").await;
    assert_eq!(s.page_name().await, "signin");
    s.click("#signin-button").await;
    s.wait_for("document.body.dataset.page === 'inbox'").await;
    s.page
        .execute(RemoveScriptToEvaluateOnNewDocumentParams::new(no_autofill))
        .await
        .unwrap();
    let cookies = s.page.get_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name == "countersign-session")
        .expect("session cookie");
    assert!(session.http_only, "HttpOnly");
    assert_eq!(
        session.same_site.as_ref().map(|s| s.as_ref().to_string()),
        Some("Strict".into())
    );
    let cookie = format!("countersign-session={}", session.value);
    s.shot("inbox-empty").await;

    // Two more approvers, with software passkeys: every request below can be met.
    app.person("dana", &["finance", "finance-senior", "security"], None)
        .await;
    app.person("erin", &["finance-senior", "security"], None)
        .await;

    // ---- requests --------------------------------------------------------------------------
    let xss = app
        .create(&payment(
            "1250.00",
            XSS,
            "alice",
            Some(json!({ "score": 35, "reasons": ["new payee"] })),
        ))
        .await;
    let xss_id = xss["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::from_secs(120));
    let to_reject = app
        .create(&payment("2400.00", "Globex Ltd", "carol", None))
        .await;
    let to_reject_id = to_reject["id"].as_str().unwrap().to_string();
    let own = app
        .create(&payment("99.00", "Office Supplies \u{202E}GA", "bob", None))
        .await;
    let own_id = own["id"].as_str().unwrap().to_string();
    app.clock.advance(Duration::from_secs(60));
    let large = app
        .create(&payment(
            "250000.00",
            "Initech Holdings B.V.",
            "alice",
            Some(json!({ "score": 82, "reasons": ["first payment to this payee", "amount 12x the usual"] })),
        ))
        .await;
    let large_id = large["id"].as_str().unwrap().to_string();
    assert_eq!(large["required"]["approvals"], 3);

    // ---- inbox -----------------------------------------------------------------------------
    s.goto("/").await;
    let items: u32 = s
        .eval("document.querySelectorAll('#inbox > li').length")
        .await;
    assert_eq!(items, 3, "the three requests bob may decide; not his own");
    let inbox = s.text("#inbox").await;
    assert!(inbox.contains(XSS), "the payee is shown as text: {inbox}");
    assert!(inbox.contains("250,000.00"));
    assert!(!inbox.contains("Office Supplies"), "own request not listed");
    // Time left comes from the server's clock (the script then counts down from it).
    let left: Vec<i64> = s
        .eval("Array.from(document.querySelectorAll('#inbox [data-seconds-left]')).map(e => Number(e.dataset.secondsLeft))")
        .await;
    assert_eq!(left, [1800, 1740, 1620], "newest first");
    s.check_page("inbox").await;

    http_checks(&app, &cookie, &xss_id).await;

    // ---- the request page, and approving ---------------------------------------------------
    s.goto(&format!("/approvals/{xss_id}")).await;
    assert_eq!(s.page_name().await, "approval");
    let fields = s.text("#fields").await;
    assert!(fields.contains("1,250.00"), "{fields}");
    assert!(fields.contains("EUR"));
    assert!(
        fields.contains("DE89 3704 0044 0532 0130 00"),
        "IBAN in groups of four"
    );
    assert!(fields.contains(XSS), "markup shows as text");
    assert!(fields.contains("INV-2026-0042"));
    let fingerprint = countersign::tx_hash::TxHash::parse(xss["tx_hash"].as_str().unwrap())
        .unwrap()
        .fingerprint();
    assert_eq!(s.text("#fingerprint").await.trim(), fingerprint);
    assert!(s.text("#initiator").await.contains("alice"));
    let main = s.text("main").await;
    assert!(
        main.contains("35/100") && main.contains("new payee"),
        "risk"
    );
    assert!(main.contains("finance"), "who must decide");
    assert!(main.contains("UTC"), "UTC beside local time");
    let canonical: String = s
        .eval("document.querySelector('#tx-canonical').textContent")
        .await;
    assert_eq!(
        canonical,
        r#"{"amount":"1250.00","currency":"EUR","payee":{"iban":"DE89370400440532013000","name":"</script><img src=x onerror=alert(1)>"},"reference":"INV-2026-0042"}"#
    );
    let pretty: String = s
        .eval("document.querySelector('#tx-pretty').textContent")
        .await;
    assert!(pretty.contains("\n  \"amount\": \"1250.00\""), "{pretty}");
    assert!(!pretty.contains("U+"), "{pretty}");
    s.check_page("approval").await;
    s.eval::<bool>("document.querySelector('#tx').open = true, true")
        .await;
    s.shot("approval-transaction-open").await;

    // Keyboard: Tab reaches Approve, and focus is visible there.
    s.eval::<bool>("document.activeElement.blur(), window.scrollTo(0, 0), true")
        .await;
    let mut reached = false;
    for _ in 0..60 {
        s.page
            .find_element("body")
            .await
            .unwrap()
            .press_key("Tab")
            .await
            .unwrap();
        if s.eval::<String>("document.activeElement.id || ''").await == "approve" {
            reached = true;
            break;
        }
    }
    assert!(reached, "Approve is reachable with the keyboard");
    let outline: String = s
        .eval("getComputedStyle(document.activeElement).outlineStyle")
        .await;
    assert_ne!(outline, "none", "visible focus");
    s.shot("approval-keyboard-focus").await;

    s.click("#approve").await;
    s.wait_for("!!document.querySelector('#your-decision')")
        .await;
    assert!(s.text("#your-decision").await.contains("You approved"));
    assert!(s.text("#outcome").await.contains("Approved"));
    let after = api_status(&app, &xss_id).await;
    assert_eq!(after["status"], "approved", "{after}");
    assert_eq!(after["approvals"][0]["user"], "bob");
    assert!(after["receipt"].is_string());
    s.check_page("approval-approved").await;

    // ---- rejecting -------------------------------------------------------------------------
    s.goto(&format!("/approvals/{to_reject_id}")).await;
    s.click("#reject").await;
    s.wait_for("!!document.querySelector('#your-decision')")
        .await;
    assert!(s.text("#your-decision").await.contains("You rejected"));
    assert_eq!(api_status(&app, &to_reject_id).await["status"], "rejected");
    s.check_page("approval-rejected").await;

    // ---- a cancelled passkey prompt changes nothing, in plain words -------------------------
    s.goto(&format!("/approvals/{large_id}")).await;
    assert!(
        s.text("main").await.contains("large-payment"),
        "the rule that applied"
    );
    s.user_verifies(false).await;
    s.click("#approve").await;
    s.wait_for("document.querySelector('#decide-status').classList.contains('is-error')")
        .await;
    let said = s.text("#decide-status").await;
    assert!(said.contains("cancelled or timed out"), "{said}");
    assert!(said.contains("Nothing was approved or rejected"), "{said}");
    let status = api_status(&app, &large_id).await;
    assert_eq!(status["status"], "pending");
    assert_eq!(status["approvals"], json!([]));
    s.check_page("approval-cancelled").await;
    s.user_verifies(true).await;
    s.click("#approve").await;
    s.wait_for("!!document.querySelector('#your-decision')")
        .await;
    let status = api_status(&app, &large_id).await;
    assert_eq!(status["status"], "pending", "1 of 3");
    assert_eq!(status["approvals"][0]["user"], "bob");
    assert!(s.text("main").await.contains("1 of 3"));
    s.check_page("approval-partial").await;

    // ---- stages: each met by someone else, and who may still approve in each ---------------
    let vendor = app
        .create(&json!({
            "action": "vendor.bank_change",
            "transaction": { "vendor": "Initech Holdings B.V.", "new_iban": "GB82WEST12345698765432", "annual_volume": "250000", "requested_via": "vendor portal" },
            "initiator": { "type": "agent", "id": "vendor-bot", "on_behalf_of": "alice" },
        }))
        .await;
    let vendor_id = vendor["id"].as_str().unwrap().to_string();
    s.goto(&format!("/approvals/{vendor_id}")).await;
    assert!(s
        .text("#initiator")
        .await
        .contains("vendor-bot (agent) on behalf of alice"));
    // A field the policy does not display is shown anyway, without a click.
    let visible: bool = s
        .eval("(() => { const o = document.querySelector('#other-fields'); return !!o && o.offsetParent !== null && o.getBoundingClientRect().height > 0; })()")
        .await;
    assert!(visible, "Other fields is on the page, open");
    let others = s.text("#other-fields").await;
    assert!(
        others.contains("/requested_via") && others.contains("vendor portal"),
        "{others}"
    );
    let stages = s.text("#stages").await;
    assert!(
        stages.contains("finance") && stages.contains("security"),
        "{stages}"
    );
    s.click("#approve").await;
    s.wait_for("!!document.querySelector('#your-decision')")
        .await;
    let status = api_status(&app, &vendor_id).await;
    assert_eq!(status["status"], "pending", "one of two stages");
    assert_eq!(status["approvals"][0]["stage"], "finance");
    assert!(s.text("#stage-finance").await.contains("1 of 1"));
    let may = s.text("#may-decide").await;
    assert!(may.contains("(dana)") && may.contains("(erin)"), "{may}");
    assert!(!may.contains("(bob)"), "bob has decided: {may}");
    s.check_page("approval-stages").await;

    // ---- a redacted field: bound by hash, never shown -----------------------------------------
    let secret = app
        .create(&json!({
            "action": "secret.export",
            "transaction": { "secret": "prod/payments/api-key", "destination": "vault://dr-site", "value": "sk_live_51Hb-BROWSER-CANARY" },
            "initiator": "alice",
        }))
        .await;
    let secret_id = secret["id"].as_str().unwrap().to_string();
    s.goto(&format!("/approvals/{secret_id}")).await;
    let fields = s.text("#fields").await;
    assert!(fields.contains("hidden — bound by hash"), "{fields}");
    assert!(!s.text("body").await.contains("BROWSER-CANARY"));
    s.check_page("approval-redacted").await;

    // ---- dark scheme -----------------------------------------------------------------------
    s.dark(true).await;
    s.goto(&format!("/approvals/{large_id}")).await;
    s.check_page("approval-dark").await;
    s.goto("/").await;
    s.check_page("inbox-dark").await;
    s.dark(false).await;

    // ---- one's own request -----------------------------------------------------------------
    s.goto(&format!("/approvals/{own_id}")).await;
    assert!(s
        .text("#blocked")
        .await
        .contains("someone else has to approve or reject it"));
    let buttons: u32 = s
        .eval("document.querySelectorAll('#approve, #reject').length")
        .await;
    assert_eq!(buttons, 0);
    // A direction override in the payee is shown as a code point, with a warning.
    assert!(s
        .text("#fields")
        .await
        .contains("Office Supplies ⟨U+202E⟩GA"));
    assert!(s
        .text("main")
        .await
        .contains("invisible or direction-changing"));
    s.check_page("approval-own").await;

    // ---- expiry while the page is open -----------------------------------------------------
    let late = app
        .create(&payment("310.00", "Late Corp", "alice", None))
        .await;
    let late_id = late["id"].as_str().unwrap().to_string();
    s.goto(&format!("/approvals/{late_id}")).await;
    // The session stays alive (idle limit 30 min) while the request (30 min) runs out.
    app.clock.advance(Duration::from_secs(20 * 60));
    s.goto(&format!("/approvals/{late_id}")).await;
    app.clock.advance(Duration::from_secs(11 * 60));
    s.click("#approve").await;
    s.wait_for("document.querySelector('#decide-status').classList.contains('is-error')")
        .await;
    let said = s.text("#decide-status").await;
    assert!(said.contains("expired"), "{said}");
    s.shot("approval-expired-error").await;
    s.goto(&format!("/approvals/{late_id}")).await;
    assert!(s.text("#outcome").await.contains("Expired"));
    assert_eq!(api_status(&app, &late_id).await["status"], "expired");

    // ---- history ---------------------------------------------------------------------------
    s.goto("/history").await;
    let history = s.text("#history").await;
    assert!(history.contains("You approved") && history.contains("You rejected"));
    let rows: u32 = s
        .eval("document.querySelectorAll('#history > li').length")
        .await;
    assert_eq!(
        rows, 4,
        "approved, rejected, the large one and the vendor change"
    );
    s.check_page("history").await;

    // ---- sign-out, and back to the page one came for ---------------------------------------
    s.click("#sign-out").await;
    // The sign-in page follows; its passkey autofill (conditional mediation), which the
    // virtual authenticator answers at once, signs in again with a new session.
    s.wait_for("document.body.dataset.page === 'inbox'").await;
    let res = app
        .approver_get("/v1/me/approvals", Some(&cookie))
        .await
        .status();
    assert_eq!(res, 401, "the session ended on the server");
    let again = s.page.get_cookies().await.unwrap();
    assert!(
        again
            .iter()
            .all(|c| c.name != "countersign-session" || c.value != session.value),
        "the old session cookie is gone"
    );
    // Without a session, a link to a request goes through sign-in and back to the request.
    s.page
        .delete_cookie(
            DeleteCookiesParams::builder()
                .name("countersign-session")
                .url(origin.clone())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    s.goto(&format!("/approvals/{xss_id}")).await;
    s.wait_for("document.body.dataset.page === 'approval'")
        .await;
    assert!(s.page.url().await.unwrap().unwrap().ends_with(&xss_id));

    drop(s.page);
    let mut browser = s.browser;
    let _ = browser.close().await;
    let _ = browser.wait().await;
    let _ = std::fs::remove_dir_all(&s.profile);
}

/// The inbox and a request page follow the server's live events without a reload: a new
/// request appears in the inbox, and another approver's decision, then a cancellation, show on
/// the request page. A value set on `window` before proves the page was never reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_pages_update_without_reload() {
    let Some(chrome) = chromium() else { return };
    let (app, origin) = spawn_localhost().await;
    let s = Session::start(&chrome, &origin).await;

    // Ann enrols in the browser and signs in (passkey autofill answers at once).
    let token = app.invite("ann", &["finance"]).await;
    s.goto(&format!("/enroll/{token}")).await;
    s.type_into("#label", "Laptop").await;
    s.click("#enroll-button").await;
    s.wait_for("!document.querySelector('#enroll-done').hidden")
        .await;
    s.goto("/").await;
    s.wait_for("document.body.dataset.page === 'inbox'").await;
    let mut bob = app.person("bob", &["finance"], None).await;

    // ---- the inbox: a request arrives ------------------------------------------------------
    assert!(s.text("main").await.contains("this page updates itself"));
    s.eval::<bool>("window.__kept = 'no reload', true").await;
    s.wait_for("document.body.dataset.live === 'open'").await;
    let first = app
        .create(&payment("640.00", "Hooli Inc", "alice", None))
        .await;
    let first_id = first["id"].as_str().unwrap().to_string();
    s.wait_for(&format!(
        "!!document.querySelector('#inbox a[href=\"/approvals/{first_id}\"]')"
    ))
    .await;
    assert_eq!(s.eval::<String>("window.__kept || ''").await, "no reload");
    s.wait_for(
        "document.querySelector('#live-note').textContent.includes('A new request arrived')",
    )
    .await;
    s.check_page("inbox-live").await;
    // A second one lands on top.
    let second = app
        .create(&payment(
            "180.00",
            "Initech",
            "alice",
            Some(json!({ "score": 80, "reasons": ["new payee"] })),
        ))
        .await;
    let second_id = second["id"].as_str().unwrap().to_string();
    s.wait_for("document.querySelectorAll('#inbox > li').length === 2")
        .await;
    assert_eq!(s.eval::<String>("window.__kept || ''").await, "no reload");

    // ---- a request page: someone else decides, then the service withdraws it ---------------
    let risky = app
        .create(&payment(
            "700.00",
            "Pied Piper",
            "alice",
            Some(json!({ "score": 80, "reasons": ["new payee"] })),
        ))
        .await;
    let risky_id = risky["id"].as_str().unwrap().to_string();
    assert_eq!(risky["required"]["approvals"], 2);
    s.goto(&format!("/approvals/{risky_id}")).await;
    s.eval::<bool>("window.__kept = 'no reload', true").await;
    s.wait_for("document.body.dataset.live === 'open'").await;
    assert!(s.text("main").await.contains("0 of 2"));
    // Ann's passkey prompt is open (held by the test) when bob decides: the page waits.
    s.eval::<bool>(
        "window.__get = navigator.credentials.get.bind(navigator.credentials), \
         navigator.credentials.get = () => new Promise((done) => { window.__release = done; }), true",
    )
    .await;
    let refreshes = "Number(document.body.dataset.liveRefreshes || 0)";
    let before: u32 = s.eval(refreshes).await;
    s.click("#approve").await;
    s.wait_for("typeof window.__release === 'function'").await;
    assert_eq!(
        app.decide(&mut bob, &risky_id, "approve").await.status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.eval::<u32>(refreshes).await,
        before,
        "no refresh mid-ceremony"
    );
    assert!(s.text("main").await.contains("0 of 2"));
    assert!(s
        .text("#decide-status")
        .await
        .contains("Confirm with your passkey"));
    // The prompt ends (cancelled): the held refresh runs, and the reason stays in view.
    s.eval::<bool>("window.__release(null), navigator.credentials.get = window.__get, true")
        .await;
    s.wait_for("document.querySelector('main').innerText.includes('1 of 2')")
        .await;
    assert!(s
        .text("#decide-status")
        .await
        .contains("Nothing was approved or rejected"));
    assert!(s.text("#decisions").await.contains("bob"));
    assert!(s
        .text("#live-note")
        .await
        .contains("Decided by someone else"));
    assert_eq!(
        s.eval::<String>("document.querySelector('#status').textContent.trim()")
            .await,
        "Waiting for decision"
    );
    // Ann can still decide: the buttons were bound again.
    assert_eq!(
        s.eval::<u32>("document.querySelectorAll('#approve:not([disabled])').length")
            .await,
        1
    );
    assert_eq!(s.eval::<String>("window.__kept || ''").await, "no reload");
    s.check_page("approval-live-decision").await;
    let res = app
        .post_json(
            &format!("/v1/approvals/{risky_id}/cancel"),
            &app.key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    s.wait_for("!!document.querySelector('#outcome') && document.querySelector('#outcome').innerText.includes('Cancelled')")
        .await;
    assert_eq!(
        s.eval::<String>("document.querySelector('#status').textContent.trim()")
            .await,
        "Cancelled"
    );
    assert_eq!(
        s.eval::<u32>("document.querySelectorAll('#approve').length")
            .await,
        0
    );
    assert_eq!(s.eval::<String>("window.__kept || ''").await, "no reload");

    // ---- the request page, approved by someone else -----------------------------------------
    s.goto(&format!("/approvals/{first_id}")).await;
    s.eval::<bool>("window.__kept = 'no reload', true").await;
    s.wait_for("document.body.dataset.live === 'open'").await;
    assert_eq!(
        app.decide(&mut bob, &first_id, "approve").await.status(),
        200
    );
    s.wait_for("document.querySelector('#status').textContent.trim() === 'Approved'")
        .await;
    assert!(s.text("#outcome").await.contains("Approved"));
    assert_eq!(s.eval::<String>("window.__kept || ''").await, "no reload");
    let errors: Vec<String> = s.eval("window.__errors || []").await;
    assert!(errors.is_empty(), "script errors: {errors:?}");
    let _ = second_id;

    drop(s.page);
    let mut browser = s.browser;
    let _ = browser.close().await;
    let _ = browser.wait().await;
    let _ = std::fs::remove_dir_all(&s.profile);
}

impl Session {
    /// Enrols `username` through the enrolment page with this browser's authenticator, then
    /// signs in with the button.
    async fn enrol_and_sign_in(&self, app: &TestApp, username: &str, groups: &[&str]) {
        let token = app.invite(username, groups).await;
        self.goto(&format!("/enroll/{token}")).await;
        self.type_into("#label", "Laptop").await;
        self.click("#enroll-button").await;
        self.wait_for("!document.querySelector('#enroll-done').hidden")
            .await;
        let no_autofill = self
            .page
            .evaluate_on_new_document(
                "PublicKeyCredential.isConditionalMediationAvailable = async () => false;",
            )
            .await
            .unwrap();
        self.goto("/").await;
        self.click("#signin-button").await;
        self.wait_for("document.body.dataset.page === 'inbox'")
            .await;
        self.page
            .execute(RemoveScriptToEvaluateOnNewDocumentParams::new(no_autofill))
            .await
            .unwrap();
    }
}

/// The admin console in two browsers, each with its own virtual authenticator: one admin
/// proposes an invitation from the people page, the other approves it with a passkey on the
/// ordinary approval page, and the first sees the invitation link (and its QR code) once. A
/// lockout is refused in words. Every console page passes the page checks and is captured at
/// desktop and phone width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_with_two_admins() {
    let Some(chrome) = chromium() else { return };
    let (app, origin) = spawn_localhost().await;
    let ann = Session::start(&chrome, &origin).await;
    let bob = Session::start(&chrome, &origin).await;
    ann.enrol_and_sign_in(&app, "ann", &["admins"]).await;
    bob.enrol_and_sign_in(&app, "bob", &["admins"]).await;

    // ---- ann proposes an invitation ------------------------------------------------------
    ann.goto("/admin").await;
    assert_eq!(ann.page_name().await, "admin-people");
    ann.check_page("admin-people").await;
    ann.type_into("#inv-username", "carol").await;
    ann.type_into("#inv-name", "Carol Jones").await;
    ann.type_into("#inv-groups", "finance").await;
    ann.type_into("#inv-email", "carol@example.com").await;
    ann.click("form[data-op='users.invite'] button[type=submit]")
        .await;
    ann.wait_for("document.body.dataset.page === 'admin-change'")
        .await;
    assert!(ann.text("#change-waiting").await.contains("another admin"));
    ann.check_page("admin-change-pending").await;
    let id: String = ann
        .eval("decodeURIComponent(location.pathname.split('/').pop())")
        .await;
    // The proposer cannot approve it: no decision buttons for them.
    ann.goto(&format!("/approvals/{id}")).await;
    let buttons: u32 = ann
        .eval("document.querySelectorAll('#approve:not([disabled])').length")
        .await;
    assert_eq!(buttons, 0, "the proposer never approves their own change");

    // ---- bob approves it with his passkey --------------------------------------------------
    bob.goto("/").await;
    assert!(bob.text("#inbox").await.contains("Change to countersign"));
    bob.goto(&format!("/approvals/{id}")).await;
    let shown = bob.text("main").await;
    for field in [
        "users.invite",
        "carol",
        "Carol Jones",
        "finance",
        "carol@example.com",
    ] {
        assert!(shown.contains(field), "the approval page shows {field}");
    }
    bob.check_page("admin-change-approval").await;
    bob.click("#approve").await;
    bob.wait_for("!!document.querySelector('#your-decision')")
        .await;
    assert!(bob.text("#outcome").await.contains("Approved"));

    // ---- ann sees the link once ------------------------------------------------------------
    ann.goto(&format!("/admin/changes/{id}")).await;
    assert!(ann.text("#change-done").await.contains("Carried out"));
    let link = ann.text("#secret-value").await;
    assert!(link.starts_with(&format!("{origin}/enroll/")), "{link}");
    let qr: u32 = ann
        .eval("document.querySelectorAll('.qr svg path').length")
        .await;
    assert!(qr > 0, "a QR code of the link");
    ann.check_page("admin-change-secret").await;
    ann.goto(&format!("/admin/changes/{id}")).await;
    let again: u32 = ann
        .eval("document.querySelectorAll('#change-secret').length")
        .await;
    assert_eq!(again, 0, "the secret is shown once");
    assert!(!ann.text("main").await.contains("/enroll/"));

    // ---- a lockout is refused in words -------------------------------------------------------
    ann.goto("/admin").await;
    ann.click("#person-bob form[data-op='users.disable'] button[type=submit]")
        .await;
    ann.wait_for(
        "!document.querySelector('#person-bob form[data-op=\"users.disable\"] .form-error').hidden",
    )
    .await;
    let error = ann
        .text("#person-bob form[data-op='users.disable'] .form-error")
        .await;
    assert!(error.contains("countersign.admin"), "{error}");
    ann.check_page("admin-people-lockout").await;

    // ---- every other console page ------------------------------------------------------------
    for (path, name) in [
        ("/admin/clients", "admin-clients"),
        ("/admin/keys", "admin-keys"),
        ("/admin/requests", "admin-requests"),
        ("/admin/audit", "admin-audit"),
        ("/admin/audit?verify=1", "admin-audit-verified"),
    ] {
        ann.goto(path).await;
        assert!(ann.page_name().await.starts_with("admin-"), "{path}");
        ann.check_page(name).await;
    }
    assert!(ann.text("#chain-ok").await.contains("verifies"));
    ann.dark(true).await;
    ann.goto("/admin/requests").await;
    ann.check_page("admin-requests-dark").await;
    drop((ann.browser, bob.browser));
}
