//! The status page of `logcollect collect --http` in a real headless Chromium, driven over
//! W3C WebDriver (chromedriver + fantoccini): it renders, an event shipped after the page
//! loaded appears within 5 s, an ERROR row is styled as one, the filter hides what it should;
//! plus `/api/recent`, `/api/stats` and `/healthz` over real HTTP; the per-second chart of
//! events and errors adds up to what was written and what failed. Screenshots are kept in
//! target/test-artifacts/.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{unique, wait_until, Broker, Collect};
use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

const HOW_TO_GET_A_BROWSER: &str = "this test needs Debian's chromium and chromium-driver \
(`scripts/test` installs them; or `sudo apt-get install chromium chromium-driver`)";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A chromedriver of the test's own, killed at the end.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run chromedriver ({e}): {HOW_TO_GET_A_BROWSER}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}: {HOW_TO_GET_A_BROWSER}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver(child, port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET: status and body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the status page");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, body.to_string())
}

fn emit(exchange: &str, level: tracing::Level, message: &str) {
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(exchange)
        .service_name("pagesvc")
        .hostname("page-host")
        .build()
        .expect("build the shipper");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        if level == tracing::Level::ERROR {
            tracing::error!(target: "pay", order = 7, "{message}");
        } else {
            tracing::info!(target: "pay", order = 7, "{message}");
        }
    });
    assert!(guard.flush(Duration::from_secs(60)).is_complete());
}

/// A headless Chromium session through the test's chromedriver.
async fn browser(driver_port: u16) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--disable-gpu", "--window-size=1280,900"]}),
    );
    // Should the workspace's test build ever enable a second rustls provider beside lapin's
    // aws-lc-rs, rustls could not pick one by itself: name it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    ClientBuilder::rustls()
        .expect("connector")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver_port))
        .await
        .unwrap_or_else(|e| panic!("no browser session ({e}): {HOW_TO_GET_A_BROWSER}"))
}

/// Keeps a screenshot of the page in target/test-artifacts/.
async fn keep_screenshot(client: &fantoccini::Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target")
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    std::fs::write(artifacts.join(name), &png).expect("keep the screenshot");
    assert!(png.starts_with(b"\x89PNG"));
}

#[test]
fn the_status_page_shows_new_events_live_in_a_real_browser() {
    let mut broker = Broker::connect();
    let exchange = unique("lc-collect-page");
    let queue = unique("lc-collect-page-q");
    broker.forget_exchange_later(&exchange);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("collect-page"));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let collect = Collect::start(&exchange, &queue, &dir, &["--http", &addr]);
    emit(&exchange, tracing::Level::INFO, "before the page");
    let driver = Driver::start();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let exchange2 = exchange.clone();
    runtime.block_on(async move {
        let client = browser(driver.1).await;
        client
            .goto(&format!("http://{addr}/"))
            .await
            .expect("load the page");
        // Rendered, live, and showing what was written before it loaded.
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("#conn.live"))
            .await
            .expect("the live feed connects");
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::XPath(
                "//tr[contains(@class,'level-info')]/td[contains(.,'before the page')]",
            ))
            .await
            .expect("the event written before the page loaded");

        // Shipped after the page loaded: there within 5 s of the broker's confirm.
        let text = unique("after-load");
        let shipped = {
            let (e, t) = (exchange2.clone(), text.clone());
            tokio::task::spawn_blocking(move || emit(&e, tracing::Level::ERROR, &t))
                .await
                .expect("ship");
            Instant::now()
        };
        let row_path = format!("//tr[contains(@class,'level-error')][td[contains(.,'{text}')]]");
        let row = client
            .wait()
            .at_most(Duration::from_secs(5))
            .for_element(Locator::XPath(&row_path))
            .await
            .unwrap_or_else(|e| panic!("the ERROR event did not appear within 5 s: {e}"));
        eprintln!("appeared {:?} after the confirm", shipped.elapsed());
        // Newest first: it is the first row.
        let first = client
            .find(Locator::Css("#events tbody tr"))
            .await
            .expect("a row");
        assert!(first.text().await.expect("text").contains(&text));
        // Styled as an error: red bold level, tinted row; an INFO level is not red.
        let styles = client
            .execute(
                "const r = arguments[0]; const l = r.querySelector('td.level');
                 const info = document.querySelector('tr.level-info td.level');
                 return [getComputedStyle(l).color, getComputedStyle(l).fontWeight,
                         getComputedStyle(r).backgroundColor, l.textContent,
                         getComputedStyle(info).color];",
                vec![serde_json::to_value(&row).expect("element")],
            )
            .await
            .expect("computed styles");
        assert_eq!(
            styles,
            json!([
                "rgb(200, 0, 0)",
                "700",
                "rgb(255, 232, 232)",
                "ERROR",
                "rgb(42, 125, 42)"
            ])
        );
        // The filter: level ≥ ERROR hides INFO rows and keeps the error.
        client
            .execute(
                "const s = document.getElementById('f-level'); s.value = 'ERROR';
                 s.dispatchEvent(new Event('input'));",
                vec![],
            )
            .await
            .expect("filter");
        let shown: Value = client
            .execute(
                "return [...document.querySelectorAll('#events tbody tr')]
                   .filter(r => !r.hidden).map(r => r.dataset.level);",
                vec![],
            )
            .await
            .expect("rows");
        let shown = shown.as_array().expect("array").clone();
        assert!(
            !shown.is_empty() && shown.iter().all(|l| l == "ERROR"),
            "{shown:?}"
        );
        // The figures are there.
        let total = client
            .find(Locator::Id("total"))
            .await
            .expect("figure")
            .text()
            .await
            .expect("text");
        assert!(total.parse::<u64>().expect("a number") >= 2, "{total}");

        keep_screenshot(&client, "collect-status-page.png").await;
        client.close().await.expect("close the browser");
    });

    // The same over plain HTTP.
    let (code, body) = get(port, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = get(port, "/api/recent");
    assert_eq!(code, 200);
    let recent: Vec<Value> = serde_json::from_str(&body).expect("JSON array");
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0]["level"], "ERROR");
    assert_eq!(recent[1]["message"], "before the page");
    assert_eq!(recent[1]["document"]["service"]["name"], "pagesvc");
    assert_eq!(recent[1]["fields"]["order"], "7");
    let (code, body) = get(port, "/api/stats");
    assert_eq!(code, 200);
    let stats: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(stats["events"], 2);
    assert_eq!(stats["facilities"][0]["name"], "pagesvc:root");
    assert_eq!(stats["facilities"][0]["events"], 2);
    assert_eq!(stats["errors"], 0);
    wait_until("the backlog figure", Duration::from_secs(30), || {
        let (_, body) = get(port, "/api/stats");
        serde_json::from_str::<Value>(&body).is_ok_and(|s| s["backlog"] == 0)
    });
    drop(collect);
    broker.delete_queue(&queue);
}

/// What the chart drew: the per-second event counts it was drawn from, the y of each point
/// of its line, each error bar's count and fill, the figures beside it, the chart's size.
const READ_CHART: &str = "
    const line = document.getElementById('rates-events');
    const values = (line.dataset.values || '').split(',').filter(v => v !== '').map(Number);
    const points = (line.getAttribute('points') || '').trim().split(/\\s+/).filter(Boolean)
      .map(p => Number(p.split(',')[1]));
    const bars = [...document.querySelectorAll('#rates-errors rect.error-bar')]
      .map(b => [Number(b.dataset.errors), getComputedStyle(b).fill]);
    const box = document.getElementById('rates-chart').getBoundingClientRect();
    return {values, points, bars, step: Number(line.dataset.step),
            total: Number(document.getElementById('total').textContent),
            errors: Number(document.getElementById('errors').textContent),
            width: box.width, height: box.height};";

/// Reads the chart until `done` holds (the page updates twice a second); the last reading.
async fn chart_when(
    client: &fantoccini::Client,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    // Bounds a wait that would otherwise hang; not part of what is asserted.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let chart = client
            .execute(READ_CHART, vec![])
            .await
            .expect("read the chart");
        if done(&chart) {
            return chart;
        }
        assert!(Instant::now() < deadline, "{what}; the chart: {chart}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|n| n.as_f64().expect("a number"))
        .collect()
}

#[test]
fn the_chart_shows_events_and_errors_per_second_adding_up_to_what_was_written() {
    let mut broker = Broker::connect();
    let exchange = unique("lc-collect-rates");
    let queue = unique("lc-collect-rates-q");
    broker.forget_exchange_later(&exchange);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("collect-rates"));
    // The facility file of service `broken` is a directory: every write to it fails.
    std::fs::create_dir_all(dir.join("broken/root.log")).expect("a directory in the way");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut collect = Collect::start(&exchange, &queue, &dir, &["--http", &addr]);
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The broker's client runs its own runtime: publishing happens between the browser's
    // steps, not inside them.
    let client = runtime.block_on(async {
        let client = browser(driver.1).await;
        client
            .goto(&format!("http://{addr}/"))
            .await
            .expect("load the page");
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("#conn.live"))
            .await
            .expect("the live feed connects");
        client
    });

    // N events, in messages of 10.
    let n = 240u64;
    for chunk in 0..n / 10 {
        let docs: Vec<Value> = (chunk * 10..chunk * 10 + 10)
            .map(|i| json!({"message": "m", "service": {"name": "rates"}, "fields": {"seq_no": i}}))
            .collect();
        broker.publish(
            &exchange,
            "logstash.rates",
            json!(docs).to_string().as_bytes(),
        );
    }
    // The collector is younger than the chart's window: its seconds add up to every event.
    let chart = runtime.block_on(chart_when(
        &client,
        "the chart's seconds add up to the events written",
        |c| {
            c["values"]
                .as_array()
                .is_some_and(|v| v.iter().filter_map(Value::as_u64).sum::<u64>() == n)
        },
    ));
    let values = numbers(&chart["values"]);
    let points = numbers(&chart["points"]);
    assert_eq!(chart["total"], json!(n), "{chart}");
    assert_eq!(chart["step"], json!(1), "{chart}");
    assert!(values.len() <= 300, "{chart}");
    assert_eq!(points.len(), values.len(), "one point a second: {chart}");
    // Drawn to scale: the busiest second at the top, a quiet one on the baseline.
    let peak = values.iter().cloned().fold(0.0, f64::max);
    assert!(peak > 0.0, "{chart}");
    for (v, y) in values.iter().zip(&points) {
        let expected = 59.0 - 58.0 * v / peak;
        assert!((y - expected).abs() < 0.06, "{v} drawn at {y}: {chart}");
    }
    assert!(
        chart["width"].as_f64().is_some_and(|w| w > 300.0)
            && chart["height"].as_f64().is_some_and(|h| h > 30.0),
        "the chart is not shown: {chart}"
    );
    assert!(
        chart["bars"].as_array().is_some_and(Vec::is_empty),
        "{chart}"
    );

    // A message that cannot be written: its failed attempts show as errors.
    broker.publish(
        &exchange,
        "logstash.broken",
        json!({"message": "m", "service": {"name": "broken"}})
            .to_string()
            .as_bytes(),
    );
    collect.wait_for_line(
        "message rejected after 3 attempts",
        Duration::from_secs(120),
    );
    // 3 failed attempts and the rejection, each counted before it is printed.
    let chart = runtime.block_on(chart_when(
        &client,
        "the error bars add up to the errors figure",
        |c| {
            c["errors"].as_u64().is_some_and(|e| e >= 4)
                && c["bars"].as_array().is_some_and(|b| {
                    Some(b.iter().filter_map(|b| b[0].as_u64()).sum::<u64>())
                        == c["errors"].as_u64()
                })
        },
    ));
    let (code, body) = get(port, "/api/stats");
    assert_eq!(code, 200);
    let stats: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(stats["errors"], chart["errors"], "{body}");
    for bar in chart["bars"].as_array().expect("bars") {
        assert_eq!(bar[1], "rgb(200, 0, 0)", "{chart}");
    }
    // Nothing of the broken message was written: the events still add up to N.
    let values = numbers(&chart["values"]);
    assert_eq!(values.iter().sum::<f64>(), n as f64, "{chart}");
    runtime.block_on(async {
        keep_screenshot(&client, "collect-status-page-rates.png").await;
        client.close().await.expect("close the browser");
    });
    drop(collect);
    broker.delete_queue(&queue);
}

#[test]
fn a_css_file_replaces_the_built_in_stylesheet_and_edits_show_at_once() {
    let mut broker = Broker::connect();
    let exchange = unique("lc-collect-css");
    let queue = unique("lc-collect-css-q");
    broker.forget_exchange_later(&exchange);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("collect-css"));
    std::fs::create_dir_all(&dir).expect("dir");
    let css = dir.join("mine.css");
    std::fs::write(&css, "body { background: #123456; }\n").expect("css");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let css_arg = css.display().to_string();
    let collect = Collect::start(
        &exchange,
        &queue,
        &dir.join("files"),
        &["--http", &addr, "--css", &css_arg],
    );
    let (code, body) = get(port, "/style.css");
    assert_eq!(
        (code, body.as_str()),
        (200, "body { background: #123456; }\n")
    );
    std::fs::write(&css, "body { background: #654321; }\n").expect("css");
    let (code, body) = get(port, "/style.css");
    assert_eq!(
        (code, body.as_str()),
        (200, "body { background: #654321; }\n")
    );
    drop(collect);
    broker.delete_queue(&queue);
}

/// An HTTP/1.1 GET naming `host`, with extra header lines: status and body.
fn request(port: u16, path: &str, host: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the status page");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, body.to_string())
}

struct Page {
    collect: Collect,
    broker: Broker,
    queue: String,
}

impl Page {
    fn start(name: &str, args: &[&str]) -> Page {
        let mut broker = Broker::connect();
        let exchange = unique(&format!("lc-collect-{name}"));
        let queue = unique(&format!("lc-collect-{name}-q"));
        broker.forget_exchange_later(&exchange);
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
        let collect = Collect::start(&exchange, &queue, &dir, args);
        Page {
            collect,
            broker,
            queue,
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let queue = self.queue.clone();
        self.broker.delete_queue(&queue);
        let _ = &self.collect;
    }
}

#[test]
fn a_foreign_host_is_refused_and_loopback_and_listed_names_are_let_in() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _page = Page::start(
        "collect-host",
        &["--http", &addr, "--http-allow-host", "Logs.Example"],
    );
    for path in ["/api/recent", "/api/stats", "/api/events", "/", "/healthz"] {
        for host in [
            "rebind.attacker.example".to_string(),
            format!("rebind.attacker.example:{port}"),
            format!("localhost.attacker.example:{port}"),
        ] {
            let (code, body) = request(port, path, &host, "");
            assert_eq!(code, 403, "{path} for {host}: {body}");
            assert!(body.contains("--http-allow-host"), "{body}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
        format!("logs.example:{port}"),
    ] {
        let (code, body) = request(port, "/api/stats", &host, "");
        assert_eq!(code, 200, "{host}: {body}");
        serde_json::from_str::<Value>(&body).expect("the figures");
    }
}

#[test]
fn off_loopback_a_token_is_required_and_without_one_collect_does_not_start() {
    let port = free_port();
    let any = format!("0.0.0.0:{port}");
    let out = common::logcollect("unused")
        .args(["collect", "--dir"])
        .arg(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("collect-notoken")))
        .args(["--http", &any])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("0.0.0.0") && stderr.contains("not a loopback address"),
        "{stderr}"
    );
    assert!(stderr.contains("--http-token-file"), "{stderr}");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("collect-token"));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret-T0ken\n").expect("token file");
    let token_arg = token_file.display().to_string();
    let _page = Page::start(
        "collect-token",
        &["--http", &any, "--http-token-file", &token_arg],
    );
    let host = format!("127.0.0.1:{port}");
    for path in ["/api/recent", "/api/stats", "/api/events"] {
        let (code, _) = request(port, path, &host, "");
        assert_eq!(code, 401, "{path} without the token");
        let (code, _) = request(port, path, &host, "Authorization: Bearer wrong\r\n");
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _) = request(port, &format!("{path}?token=s3cret"), &host, "");
        assert_eq!(code, 401, "{path} with a prefix of the token");
    }
    let (code, body) = request(
        port,
        "/api/stats",
        &host,
        "Authorization: Bearer s3cret-T0ken\r\n",
    );
    assert_eq!(code, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).is_ok_and(|s| s["events"] == 0));
    let (code, body) = request(port, "/api/recent?token=s3cret-T0ken", &host, "");
    assert_eq!((code, body.as_str()), (200, "[]"));
    // The page, its script and /healthz hold no events.
    assert_eq!(request(port, "/", &host, "").0, 200);
    assert_eq!(request(port, "/app.js", &host, "").0, 200);
    assert_eq!(request(port, "/healthz", &host, "").0, 200);
    // A foreign Host is refused even with the token.
    let (code, _) = request(
        port,
        "/api/stats",
        "rebind.attacker.example",
        "Authorization: Bearer s3cret-T0ken\r\n",
    );
    assert_eq!(code, 403);
}

/// A live feed held open: its answer's head read.
fn open_feed(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("the feed's head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

#[test]
fn live_connections_are_capped_and_one_more_is_told_503() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _page = Page::start(
        "collect-cap",
        &["--http", &addr, "--http-max-connections", "2"],
    );
    let first = open_feed(port);
    let _second = open_feed(port);
    let (code, body) = request(port, "/healthz", "127.0.0.1", "");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("--http-max-connections"), "{body}");
    let (code, _) = request(port, "/api/stats", "127.0.0.1", "");
    assert_eq!(code, 503);
    // One feed closed: room for one again.
    drop(first);
    wait_until(
        "a connection is let in again",
        Duration::from_secs(30),
        || request(port, "/api/stats", "127.0.0.1", "").0 == 200,
    );
}
