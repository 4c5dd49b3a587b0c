//! Receivers for what the server sends out: an HTTP endpoint that records each request and
//! answers as scripted (webhooks, chat), a small SMTP server that keeps each message, and the
//! independent check of a webhook's signature (Python's `standardwebhooks`, the reference
//! library of the standard).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A scripted answer: a status and headers.
type Answer = (u16, Vec<(String, String)>);

/// An HTTP endpoint: answers each request with the next scripted status and headers (200 once
/// the script is spent) and records it.
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    pub fn serve(listener: TcpListener) -> Receiver {
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            got: Arc::default(),
            script: Arc::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let _ = me.handle(sock).await;
                });
            }
        });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next answer: a status and headers.
    pub fn then(&self, status: u16, headers: &[(&str, &str)]) {
        self.script.lock().unwrap().push_back((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (20 s at most) until `n` requests have arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            if self.count() >= n {
                return self.all();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} requests, got {}: {:?}",
            self.count(),
            self.all()
        );
    }

    async fn handle(&self, sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(sock);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).await?;
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).await?;
            let (status, extra) = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((200, Vec::new()));
            self.got.lock().unwrap().push(Received {
                path,
                headers,
                body: String::from_utf8(body).unwrap(),
            });
            let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n");
            for (k, v) in extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            reader.get_mut().write_all(head.as_bytes()).await?;
        }
    }
}

/// A message an SMTP client handed over.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A small SMTP server (RFC 5321's plain dialogue, no TLS) keeping every message.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    pub fn serve(listener: TcpListener) -> SmtpSink {
        let sink = SmtpSink {
            port: listener.local_addr().unwrap().port(),
            mails: Arc::default(),
        };
        let me = sink.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let _ = me.session(sock).await;
                });
            }
        });
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        for _ in 0..400 {
            if self.mails.lock().unwrap().len() >= n {
                return self.mails.lock().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} mails, got {:?}", self.mails.lock().unwrap());
    }

    async fn session(&self, sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut s = BufReader::new(sock);
        s.get_mut().write_all(b"220 sink ESMTP\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        loop {
            let mut line = String::new();
            if s.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                b"250 sink\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                from = line[10..].trim().to_string();
                b"250 ok\r\n"
            } else if upper.starts_with("RCPT TO:") {
                to.push(line[8..].trim().to_string());
                b"250 ok\r\n"
            } else if upper.starts_with("DATA") {
                s.get_mut().write_all(b"354 go on\r\n").await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if s.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(&l);
                }
                self.mails.lock().unwrap().push(Mail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 queued\r\n"
            } else if upper.starts_with("QUIT") {
                s.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                b"250 ok\r\n"
            };
            s.get_mut().write_all(reply).await?;
        }
    }
}

/// Whether Python's `standardwebhooks` is here; without it the independent check is skipped,
/// unless `CS_TEST_REQUIRE_INTEROP=1` (CI), which makes that a failure.
pub fn standardwebhooks_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CS_TEST_REQUIRE_INTEROP").map_or(true, |v| v != "1"),
            "CS_TEST_REQUIRE_INTEROP=1 but Python's standardwebhooks is missing (pip install -r examples/verify/requirements.txt)"
        );
        eprintln!("SKIPPED the independent webhook check: pip install -r examples/verify/requirements.txt");
    }
    ok
}

/// Verifies a received webhook with `standardwebhooks` (the reference library) and `secret`.
pub fn verify_independently(secret: &str, got: &Received) -> Result<(), String> {
    use std::io::Write;
    let input = serde_json::json!({
        "secret": secret,
        "body": got.body,
        "headers": {
            "webhook-id": got.header("webhook-id"),
            "webhook-timestamp": got.header("webhook-timestamp"),
            "webhook-signature": got.header("webhook-signature"),
        },
    });
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom standardwebhooks.webhooks import Webhook\nd = json.load(sys.stdin)\nWebhook(d['secret']).verify(d['body'], d['headers'])\n",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
