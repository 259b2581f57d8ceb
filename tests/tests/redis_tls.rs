//! `rediss://`: a TLS Redis started by the test on a free loopback port, with a throwaway CA.
#![allow(clippy::unwrap_used)] // test code

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow::testing::Recorder;
use eventflow::{Envelope, EventBus, EventError, Handler, Payload};

struct TlsRedis {
    dir: PathBuf,
    server: std::process::Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Starts a TLS-only Redis, or says why it cannot (no redis-server with TLS, no openssl).
fn start_tls_redis() -> Result<TlsRedis, String> {
    let dir = std::env::temp_dir().join(format!("eventflow-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .map_err(|e| e.to_string())?;
    let ca = "/CN=eventflow test CA";
    run(
        &dir,
        &[
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "1", "-subj", ca,
        ],
    )?;
    run(
        &dir,
        &[
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    )?;
    run(
        &dir,
        &[
            "openssl",
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
        ])
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let redis = TlsRedis { dir, server, port };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("redis-server did not open its TLS port (built without TLS?)".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(redis)
}

fn tls_redis_or_skip() -> Option<TlsRedis> {
    match start_tls_redis() {
        Ok(r) => Some(r),
        Err(e) if std::env::var("EVENTFLOW_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!("a TLS Redis is required (EVENTFLOW_REQUIRE_REDIS=1) but cannot be started: {e}")
        }
        Err(e) => {
            eprintln!("\n!!!!!!!! SKIPPED TLS test: cannot start a TLS Redis: {e} !!!!!!!!\n");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_work_and_untrusted_certificates_are_refused() {
    let Some(server) = tls_redis_or_skip() else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/0", server.port);

    // The throwaway CA is not among the system's roots: the connection is refused.
    let mut untrusted = RedisConfig::new(&url);
    untrusted.publish_timeout = Duration::from_secs(3);
    let err = EventBus::builder()
        .without_registry()
        .redis_config(untrusted)
        .build()
        .await
        .expect_err("must fail");
    assert!(matches!(err, EventError::Connection(_)), "{err}");

    let mut cfg = RedisConfig::new(&url);
    cfg.tls_root_cert_pem = Some(std::fs::read(server.dir.join("ca.crt")).unwrap());
    cfg.queue = "tls-test".into();
    cfg.block = Duration::from_millis(100);
    let rec = Recorder::new();
    let worker = EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .recorder(&rec)
        .handler(Handler::new("secure", "secure.ping", |_env, _ctx| async {
            Ok(())
        }))
        .build()
        .await
        .unwrap();
    worker.start().await.unwrap();
    for _ in 0..10 {
        worker
            .publish_envelope(Envelope::with_payload(
                "secure.ping".into(),
                Payload::json(serde_json::json!({})),
            ))
            .await
            .unwrap();
    }
    let outcomes = rec.wait_for_outcomes(10, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 10);
    assert!(outcomes.iter().all(|o| o.succeeded()));
    let start = Instant::now();
    while worker.health().await.pending != Some(0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "entries left pending over TLS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.unwrap();
}
