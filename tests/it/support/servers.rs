//! Real AWS-protocol servers for the integration tests, each on a free loopback port.
//!
//! - [`LookupServer`]: `tests/servers/lookup_events.py`, our CloudTrail LookupEvents server
//!   (moto has none), with a control API to load events and inject faults.
//! - [`Moto`]: moto server for CloudWatch Logs, SNS, SQS, IAM and STS.
//! - [`aws_env`]: points a `rolewatch` command at them with test credentials.
//! - [`sdk_config`] and [`attach_new_policy`]: set up the vendor's role in moto's IAM.
//! - [`SmtpServer`]: `tests/servers/smtp_server.py` (aiosmtpd), plain, STARTTLS or implicit
//!   TLS, with or without AUTH; [`TestCa`] makes the certificates for it.
//!
//! `./scripts/test` installs the servers into `.venv` and exports `ROLEWATCH_TEST_PYTHON` and
//! `ROLEWATCH_TEST_MOTO`. A missing server is a panic that says so, never a skipped test.
//! Every server is killed when its handle drops, also when the test panics.
//!
//! `tests/it/servers.rs` checks the servers themselves, without the binary: raw HTTP exactly
//! as the SDK sends it, and the real `aws-sdk-cloudtrail` client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a server may take to say it is listening. The LookupEvents server starts in
/// about 0.1 s and moto in about 0.5 s on an idle machine; builds running beside the tests
/// can make that several times longer.
const LOOKUP_START_TIMEOUT: Duration = Duration::from_secs(10);
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(30);
const SMTP_START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter for the LookupEvents server: `ROLEWATCH_TEST_PYTHON`, else the
/// repository's `.venv/bin/python`, else `python3` (the server needs only the stdlib).
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("ROLEWATCH_TEST_PYTHON") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "ROLEWATCH_TEST_PYTHON={} does not exist; run ./scripts/test to create the test venv",
            path.display()
        );
        return path;
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    assert!(
        found,
        "no Python for the LookupEvents test server: set ROLEWATCH_TEST_PYTHON or run \
         ./scripts/test, which creates .venv"
    );
    PathBuf::from("python3")
}

/// The moto server executable: `ROLEWATCH_TEST_MOTO`, else the repository's
/// `.venv/bin/moto_server`.
fn moto_server() -> PathBuf {
    let path = std::env::var_os("ROLEWATCH_TEST_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/moto_server"));
    assert!(
        path.exists(),
        "moto_server not found at {}; run ./scripts/test, which installs moto[server] into \
         .venv (or set ROLEWATCH_TEST_MOTO)",
        path.display()
    );
    path
}

/// Collects a child's stderr in the background, for failure messages.
pub fn drain_to_log(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
            // Keep the tail: moto logs every request.
            if log.len() > 64 * 1024 {
                let cut = log.len() - 32 * 1024;
                let cut = (cut..log.len())
                    .find(|&i| log.is_char_boundary(i))
                    .unwrap_or(0);
                log.drain(..cut);
            }
            log.push_str(&line);
            line.clear();
        }
    });
    log
}

pub fn log_text(log: &Arc<Mutex<String>>) -> String {
    log.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A reply from [`http`].
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "reply body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port` on a fresh connection (`Connection: close`).
///
/// Small on purpose: enough for the control APIs and for sending exactly the bytes the SDK
/// sends, so a test can see the server's raw reply.
///
/// # Errors
///
/// Connection, timeout and I/O errors, and a reply that is not HTTP.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpReply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<HttpReply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers in the reply"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code in the reply"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A request read by [`read_request`], for the tests' HTTP proxies in front of moto.
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// The headers to forward: all but `Host`, `Content-Length`, `Connection` and
    /// `Transfer-Encoding` ([`http`] writes its own).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// Sends the request on to `127.0.0.1:upstream` with [`http`].
    ///
    /// # Errors
    ///
    /// As [`http`].
    pub fn forward(&self, upstream: u16) -> std::io::Result<HttpReply> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        http(upstream, &self.method, &self.path, &headers, &self.body)
    }
}

/// Reads one request (its body as long as `Content-Length` says) from a connection a proxy
/// accepted, waiting up to 30 s; `None` when the client closed it without sending one.
///
/// # Errors
///
/// Timeout and I/O errors.
pub fn read_request(conn: &TcpStream) -> std::io::Result<Option<HttpRequest>> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("POST").to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if !["host", "connection", "transfer-encoding"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                headers.push((name, value));
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(HttpRequest {
        method,
        path,
        headers,
        body,
    }))
}

/// A server script started by [`start_script`].
struct Started {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    /// Held open so that the server exits (it reads stdin to EOF) even if this process dies
    /// without running `Drop`.
    stdin: ChildStdin,
}

/// Spawns `cmd` (one of our Python servers) with piped stdin, stdout and stderr and waits up
/// to `timeout` for its first line, `LISTENING <port>`; `what` names the server in panics.
#[track_caller]
fn start_script(what: &str, mut cmd: Command, timeout: Duration) -> Started {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot start the {what} ({cmd:?}): {err}; run ./scripts/test to set up the \
                 test servers"
            )
        });
    let stdin = child.stdin.take().expect("stdin is piped");
    let stderr = drain_to_log(child.stderr.take().expect("stderr is piped"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep reading so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let Ok(line) = rx.recv_timeout(timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the {what} did not print LISTENING within {timeout:?}; stderr:\n{}",
            log_text(&stderr)
        );
    };
    let port = line
        .strip_prefix("LISTENING ")
        .and_then(|port| port.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from the {what}: {line:?}"));
    Started {
        child,
        port,
        stderr,
        stdin,
    }
}

/// One call of a test server's control API (`/_control/…`), which must answer 200 with JSON;
/// anything else is a panic that quotes the reply and the server's stderr.
#[track_caller]
fn control_call(
    port: u16,
    what: &str,
    stderr: &Arc<Mutex<String>>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Value {
    let reply = http(
        port,
        method,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap_or_else(|err| panic!("{method} {path} on the {what}: {err}"));
    assert_eq!(
        reply.status,
        200,
        "{method} {path} on the {what}: {}\nserver stderr:\n{}",
        String::from_utf8_lossy(&reply.body),
        log_text(stderr)
    );
    reply.json()
}

/// Our CloudTrail LookupEvents server (`tests/servers/lookup_events.py`) on a free port.
///
/// Events are CloudTrail records; the server derives what LookupEvents returns from them.
/// See the script's docstring for the control API the methods here wrap.
pub struct LookupServer {
    pub(crate) child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    /// Held open so that the server exits (it reads stdin to EOF) even if this process dies
    /// without running `Drop`.
    _stdin: ChildStdin,
}

impl LookupServer {
    /// Starts the server and waits (up to 10 s) for its `LISTENING <port>` line.
    #[track_caller]
    pub fn start() -> LookupServer {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/servers/lookup_events.py"))
            .args(["--port", "0", "--exit-on-stdin-eof"]);
        let Started {
            child,
            port,
            stderr,
            stdin,
        } = start_script("LookupEvents server", cmd, LOOKUP_START_TIMEOUT);
        LookupServer {
            child,
            port,
            stderr,
            _stdin: stdin,
        }
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL_CLOUDTRAIL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server wrote to stderr so far (tracebacks of its own bugs, for instance).
    pub fn stderr(&self) -> String {
        log_text(&self.stderr)
    }

    #[track_caller]
    fn control(&self, method: &str, path: &str, body: &[u8]) -> Value {
        control_call(
            self.port,
            "LookupEvents server",
            &self.stderr,
            method,
            path,
            body,
        )
    }

    /// Adds CloudTrail records, visible at once. Returns the number of events stored.
    #[track_caller]
    pub fn add_events(&self, records: &[Value]) -> u64 {
        let events: Vec<Value> = records.iter().map(|r| json!({ "record": r })).collect();
        self.add_specs(&events)
    }

    /// Adds one event described by a control-API spec, for late or malformed events:
    /// `{"record": {…}, "visible_after_ms": 5000}` appears 5 s from now (inside windows a
    /// poller has already covered); `{"cloudtrail_event_raw": "{not json", "event_id": "…",
    /// "event_time": 1.7e9}` is sent verbatim as `CloudTrailEvent`. Optional overrides:
    /// `event_id`, `event_name`, `event_source`, `event_time` (epoch seconds or ISO-8601),
    /// `username`, `read_only`, `access_key_id`, `resources`.
    #[track_caller]
    pub fn add_event_with(&self, spec: Value) -> u64 {
        self.add_specs(std::slice::from_ref(&spec))
    }

    /// Adds several control-API event specs (see [`LookupServer::add_event_with`]).
    #[track_caller]
    pub fn add_specs(&self, specs: &[Value]) -> u64 {
        let body = serde_json::to_vec(&json!({ "events": specs })).expect("specs serialise");
        let reply = self.control("POST", "/_control/events", &body);
        reply["total"].as_u64().expect("total is a number")
    }

    /// Adds JSON lines (one record, or one spec, per line), e.g. the output of
    /// `tests/fixtures/cloudtrail/generate.py`. The fast path for large loads.
    #[track_caller]
    pub fn add_jsonl(&self, lines: &[u8]) -> u64 {
        let reply = self.control("POST", "/_control/events.jsonl", lines);
        reply["total"].as_u64().expect("total is a number")
    }

    /// Sets faults: `{"throttle_next": N, "error_5xx_next": N, "status_5xx": 503,
    /// "delay_ms": N, "delay_next": N, "rate_limit_per_sec": R}`. Fields not given keep
    /// their value. Returns the faults now in force.
    #[track_caller]
    pub fn faults(&self, faults: Value) -> Value {
        let body = serde_json::to_vec(&faults).expect("faults serialise");
        self.control("POST", "/_control/faults", &body)["faults"].clone()
    }

    /// Request statistics: `requests_total`, `by_operation`, `throttled`, `errors_5xx`,
    /// `errors_4xx`, `max_requests_in_1s`, `events_total`, `events_visible`, `faults`, and
    /// `recent_requests` (the last 1000: `time`, `operation`, `target`, `attribute`,
    /// `start_time`, `end_time`, `max_results`, `token`, `status`, `error`, `returned`).
    #[track_caller]
    pub fn stats(&self) -> Value {
        self.control("GET", "/_control/stats", b"")
    }

    /// How a request's account is known: `{"moto": "<moto endpoint>"}` (moto's STS says the
    /// account of each access key) and/or `{"keys": {"<access key id>": "<account>"}}`.
    #[track_caller]
    pub fn accounts(&self, accounts: Value) -> Value {
        let body = serde_json::to_vec(&accounts).expect("accounts serialise");
        self.control("POST", "/_control/accounts", &body)
    }

    /// Forgets all events, faults and statistics.
    #[track_caller]
    pub fn reset(&self) {
        self.control("POST", "/_control/reset", b"");
    }
}

impl Drop for LookupServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A moto server (`moto_server -H 127.0.0.1 -p <port>`) on a free port.
pub struct Moto {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Moto {
    /// Starts moto and waits (up to 30 s) until it answers HTTP.
    #[track_caller]
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// [`Moto::start`] with extra environment for moto, e.g.
    /// `MOTO_IAM_LOAD_MANAGED_POLICIES=true` (AWS-managed policies such as AdministratorAccess).
    #[track_caller]
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let program = moto_server();
        // moto has no "port 0"; a port just released by the kernel is free unless another
        // process takes it in between, so try a few.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let mut child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|err| {
                    panic!(
                        "cannot start {}: {err}; run ./scripts/test to set up the test servers",
                        program.display()
                    )
                });
            let stderr = drain_to_log(child.stderr.take().expect("stderr is piped"));
            let deadline = Instant::now() + MOTO_START_TIMEOUT;
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: most likely the port was taken; try another
                }
                if http(port, "GET", "/moto-api/", &[], b"").is_ok() {
                    return Moto {
                        child,
                        port,
                        stderr,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "moto did not answer HTTP within {MOTO_START_TIMEOUT:?}; stderr:\n{}",
                        log_text(&stderr)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
            last_log = log_text(&stderr);
        }
        panic!("moto exited at start three times; last stderr:\n{last_log}");
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL_<SERVICE>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// moto's request log so far.
    pub fn stderr(&self) -> String {
        log_text(&self.stderr)
    }

    /// Clears all of moto's state (`POST /moto-api/reset`).
    #[track_caller]
    pub fn reset(&self) {
        let reply = http(self.port, "POST", "/moto-api/reset", &[], b"")
            .unwrap_or_else(|err| panic!("moto reset: {err}"));
        assert_eq!(reply.status, 200, "moto reset answered {}", reply.status);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Test credentials and region for a `rolewatch` command, with the CloudTrail endpoint on
/// our LookupEvents server and CloudWatch Logs, SNS, SQS, IAM, STS and EventBridge on moto.
///
/// Instance metadata is disabled (each call would otherwise wait for it), and anything in
/// the caller's environment that could send requests elsewhere or pick other credentials is
/// removed.
pub fn aws_env(cmd: &mut Command, endpoint_cloudtrail: Option<&str>, endpoint_moto: Option<&str>) {
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE");
    for service in [
        "CLOUDTRAIL",
        "CLOUDWATCH_LOGS",
        "SNS",
        "SQS",
        "IAM",
        "STS",
        "EVENTBRIDGE",
        "ORGANIZATIONS",
    ] {
        cmd.env_remove(format!("AWS_ENDPOINT_URL_{service}"));
    }
    // Without the LookupEvents server, CloudTrail too refuses at once: nothing leaves
    // loopback.
    cmd.env(
        "AWS_ENDPOINT_URL_CLOUDTRAIL",
        endpoint_cloudtrail.unwrap_or("http://127.0.0.1:9"),
    );
    // Without moto, IAM (the change analysis) refuses the connection at once: the analysis
    // degrades to "diff unavailable" instead of waiting for the real endpoint.
    cmd.env("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_ORGANIZATIONS", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_EVENTBRIDGE", "http://127.0.0.1:9");
    if let Some(endpoint) = endpoint_moto {
        for service in [
            "CLOUDWATCH_LOGS",
            "SNS",
            "SQS",
            "IAM",
            "STS",
            "EVENTBRIDGE",
            "ORGANIZATIONS",
        ] {
            cmd.env(format!("AWS_ENDPOINT_URL_{service}"), endpoint);
        }
    }
}

/// A CloudTrail record as the tests need it: `eventName` on the vendor's role at
/// `event_time` (epoch seconds), with a given `eventID`.
pub fn cloudtrail_record(event_id: &str, event_name: &str, event_time: i64) -> Value {
    let time = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(event_time as u64),
    )
    .to_string();
    json!({
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLEID1234567",
            "arn": "arn:aws:iam::111122223333:user/terraform-ci",
            "accountId": "111122223333",
            "accessKeyId": "AKIAEXAMPLEKEY123456",
            "userName": "terraform-ci"
        },
        "eventTime": time,
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.23",
        "userAgent": "aws-cli/2.22.4",
        "requestParameters": {
            "roleName": "astronomer-remote-management",
            "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"
        },
        "responseElements": null,
        "requestID": format!("req-{event_id}"),
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management"
    })
}

/// Polls `cond` every 50 ms until it holds (true) or `timeout` has passed (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// moto as an IAM to set up.
// ---------------------------------------------------------------------------------------

/// An SDK config for `endpoint` (moto, or a port where nothing listens) with the test
/// credentials and region.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .http_client(rolewatch::aws::https_client())
        .load()
        .await
}

/// Creates the managed policy `name` with `document` and attaches it to `role`; returns the
/// policy's ARN.
pub async fn attach_new_policy(
    iam: &aws_sdk_iam::Client,
    role: &str,
    name: &str,
    document: &Value,
) -> String {
    let arn = iam
        .create_policy()
        .policy_name(name)
        .policy_document(document.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create the policy {name}: {e:?}"))
        .policy()
        .and_then(|p| p.arn())
        .expect("the policy's ARN")
        .to_owned();
    iam.attach_role_policy()
        .role_name(role)
        .policy_arn(&arn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("attach the policy {name} to {role}: {e:?}"));
    arn
}

// ---------------------------------------------------------------------------------------
// SMTP: a throwaway CA and aiosmtpd.
// ---------------------------------------------------------------------------------------

/// A throwaway CA and a server certificate it signed, as PEM files in a temporary directory.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// The CA (`keyCertSign`, `cRLSign`, `digitalSignature`) and a server certificate:
    /// `basicConstraints=critical,CA:FALSE`, SAN `localhost` and `127.0.0.1` (rustls refuses
    /// a server certificate marked as a CA).
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "rolewatch throwaway test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("the CA signs itself");
        let issuer = Issuer::from_params(&ca, &ca_key);

        let key = KeyPair::generate().expect("a server key");
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server.is_ca = IsCa::ExplicitNoCa;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = server.signed_by(&key, &issuer).expect("the CA signs");

        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write server.pem");
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write key");
        TestCa { dir }
    }

    /// The CA certificate, for a client's `ca_file`.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate and key, for [`SmtpOptions::starttls`] or
    /// [`SmtpOptions::implicit_tls`].
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }
}

/// How [`SmtpServer::start`] runs `tests/servers/smtp_server.py`; the default is plain SMTP
/// on a free port, no AUTH, no delay.
#[derive(Default)]
pub struct SmtpOptions {
    pub port: Option<u16>,
    /// STARTTLS with this certificate and key.
    pub starttls: Option<(PathBuf, PathBuf)>,
    /// TLS from the first byte with this certificate and key.
    pub implicit_tls: Option<(PathBuf, PathBuf)>,
    /// AUTH required, with this user name and password.
    pub auth: Option<(String, String)>,
    /// After saving the first message, wait this long before the final 250.
    pub delay_first_ms: u64,
}

/// `tests/servers/smtp_server.py` (aiosmtpd) on loopback, saving each message in a directory
/// as `NNNN.eml` (the bytes received) and then `NNNN.json` (its description).
pub struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    _stdin: ChildStdin,
}

impl SmtpServer {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server and waits (up to 20 s) until it prints its port.
    #[track_caller]
    pub fn start(opts: SmtpOptions) -> SmtpServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/servers/smtp_server.py"))
            .arg(dir.path())
            .arg("--exit-on-stdin-eof")
            .args(["--port", &opts.port.unwrap_or(0).to_string()])
            .args(["--delay-first-ms", &opts.delay_first_ms.to_string()]);
        if let Some((cert, key)) = &opts.starttls {
            cmd.arg("--starttls").arg(cert).arg(key);
        }
        if let Some((cert, key)) = &opts.implicit_tls {
            cmd.arg("--implicit-tls").arg(cert).arg(key);
        }
        if let Some((user, password)) = &opts.auth {
            cmd.args(["--auth", user, password]);
        }
        let Started {
            child,
            port,
            stderr,
            stdin,
        } = start_script("SMTP server", cmd, SMTP_START_TIMEOUT);
        SmtpServer {
            child,
            port,
            dir,
            stderr,
            _stdin: stdin,
        }
    }

    /// How many messages arrived: the `.eml` files, each written first.
    pub fn received(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .expect("the message directory is readable")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count()
    }

    /// The saved messages' descriptions (`NNNN.json`), in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("the message directory is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_slice(&std::fs::read(p).expect("message JSON readable"))
                    .expect("message JSON parses")
            })
            .collect()
    }

    /// The raw bytes of message `n` (1-based).
    pub fn raw(&self, n: usize) -> String {
        let p = self.dir.path().join(format!("{n:04}.eml"));
        String::from_utf8(std::fs::read(p).expect("the .eml is readable")).expect("UTF-8 mail")
    }

    /// Waits until at least `n` messages arrived.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let found = wait_until(timeout, || self.messages().len() >= n);
        let messages = self.messages();
        assert!(
            found,
            "expected {n} message(s) within {timeout:?}, got {}; SMTP server stderr:\n{}",
            messages.len(),
            log_text(&self.stderr)
        );
        messages
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Tests of the servers themselves.
// ---------------------------------------------------------------------------------------

/// The target header the Rust SDK sends.
/// `tests/servers/test_metric_filter.py` on a free port: it evaluates plain terms itself and
/// can be scripted to disagree, to reject a pattern or to fail (see the script's docstring).
pub struct MetricFilterServer {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    /// Held open so that the server exits (it reads stdin to EOF) even if this process dies
    /// without running `Drop`.
    _stdin: ChildStdin,
}

impl MetricFilterServer {
    /// Starts the server and waits (up to 10 s) for its `LISTENING <port>` line.
    #[track_caller]
    pub fn start() -> MetricFilterServer {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/servers/test_metric_filter.py"))
            .args(["--port", "0", "--exit-on-stdin-eof"]);
        let Started {
            child,
            port,
            stderr,
            stdin,
        } = start_script("TestMetricFilter server", cmd, LOOKUP_START_TIMEOUT);
        MetricFilterServer {
            child,
            port,
            stderr,
            _stdin: stdin,
        }
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    #[track_caller]
    fn control(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = serde_json::to_vec(body).expect("control body serialises");
        control_call(
            self.port,
            "TestMetricFilter server",
            &self.stderr,
            method,
            path,
            &body,
        )
    }

    /// Queues answers, one per coming API call: `{"reply": {"matches": […]}}` (sent verbatim)
    /// or `{"error": {"status": 400, "code": "…", "message": "…"}}`.
    #[track_caller]
    pub fn answers(&self, answers: Value) {
        self.control("POST", "/_control/answers", &json!({ "answers": answers }));
    }

    /// Lasting disagreements: `{"flip": [message…], "values": {message: {…}}, "echo":
    /// {message: text}, "reject": {pattern: error message}}`; fields not given keep their value.
    #[track_caller]
    pub fn settings(&self, settings: Value) {
        self.control("POST", "/_control/settings", &settings);
    }

    /// The API calls seen: `{"calls": [{"target", "filterPattern", "messages", "status",
    /// "code", "access_key", "content_type"}], "answers_left": N}`.
    #[track_caller]
    pub fn stats(&self) -> Value {
        self.control("GET", "/_control/stats", &json!({}))
    }
}

impl Drop for MetricFilterServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Webhooks: an HTTP(S) receiver with scripted faults.
// ---------------------------------------------------------------------------------------

/// How [`WebhookServer::start`] runs `tests/servers/webhook_server.py`.
#[derive(Default)]
pub struct WebhookOptions {
    /// HTTPS with this certificate and key (see [`TestCa::server`]).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// One answer per request, in order: `{"status": 429, "retry_after": "3"}`,
    /// `{"status": 500}`, `{"delay_ms": 5000}`, `{"status": 400, "body": "…"}`.
    pub faults: Vec<Value>,
    /// The answer once the faults are used up (default 200).
    pub status: Option<u16>,
}

/// `tests/servers/webhook_server.py` on loopback, saving each request as `NNNN.json`.
pub struct WebhookServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    _stdin: ChildStdin,
}

impl WebhookServer {
    #[track_caller]
    pub fn start(opts: WebhookOptions) -> WebhookServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/servers/webhook_server.py"))
            .arg(dir.path())
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .arg("--faults")
            .arg(serde_json::to_string(&opts.faults).expect("faults serialise"));
        if let Some(s) = opts.status {
            cmd.args(["--status", &s.to_string()]);
        }
        if let Some((cert, key)) = &opts.tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let Started {
            child,
            port,
            stderr,
            stdin,
        } = start_script("webhook server", cmd, SMTP_START_TIMEOUT);
        WebhookServer {
            child,
            port,
            dir,
            stderr,
            _stdin: stdin,
        }
    }

    /// `https://127.0.0.1:<port><path>` (or `http://` without TLS).
    pub fn url(&self, tls: bool, path: &str) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("the request directory is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_slice(&std::fs::read(p).expect("request JSON readable"))
                    .expect("request JSON parses")
            })
            .collect()
    }

    /// Waits until at least `n` requests arrived.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let found = wait_until(timeout, || self.requests().len() >= n);
        let requests = self.requests();
        assert!(
            found,
            "expected {n} request(s) within {timeout:?}, got {}; webhook server stderr:\n{}",
            requests.len(),
            log_text(&self.stderr)
        );
        requests
    }
}

/// A request's header (case-insensitive), as the receiver saw it.
pub fn request_header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str())
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/servers/sts_clock.py` on a free port: an STS stand-in whose assumed-role
/// credentials expire an hour after the request's signing time (the caller's clock), with
/// AssumeRole counted per account.
pub struct StsClockServer {
    child: Child,
    port: u16,
    _stderr: Arc<Mutex<String>>,
    _stdin: ChildStdin,
}

impl StsClockServer {
    #[track_caller]
    pub fn start() -> StsClockServer {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/servers/sts_clock.py"))
            .args(["--port", "0", "--exit-on-stdin-eof"]);
        let Started {
            child,
            port,
            stderr,
            stdin,
        } = start_script("STS stand-in", cmd, LOOKUP_START_TIMEOUT);
        StsClockServer {
            child,
            port,
            _stderr: stderr,
            _stdin: stdin,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /stats`: AssumeRole calls per account, and each call.
    pub fn stats(&self) -> Value {
        http(self.port, "GET", "/stats", &[], b"")
            .unwrap_or_else(|e| panic!("STS stand-in /stats: {e}"))
            .json()
    }
}

impl Drop for StsClockServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
