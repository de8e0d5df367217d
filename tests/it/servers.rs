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
//! The tests at the end of this file check the servers themselves, without the binary: raw
//! HTTP exactly as the SDK sends it, and the real `aws-sdk-cloudtrail` client.

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

/// Our CloudTrail LookupEvents server (`tests/servers/lookup_events.py`) on a free port.
///
/// Events are CloudTrail records; the server derives what LookupEvents returns from them.
/// See the script's docstring for the control API the methods here wrap.
pub struct LookupServer {
    child: Child,
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
        let reply = http(
            self.port,
            method,
            path,
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap_or_else(|err| panic!("{method} {path} on the LookupEvents server: {err}"));
        assert_eq!(
            reply.status,
            200,
            "{method} {path} on the LookupEvents server: {}\nserver stderr:\n{}",
            String::from_utf8_lossy(&reply.body),
            self.stderr()
        );
        reply.json()
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
/// our LookupEvents server and CloudWatch Logs, SNS, SQS, IAM and STS on moto.
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
    for service in ["CLOUDTRAIL", "CLOUDWATCH_LOGS", "SNS", "SQS", "IAM", "STS"] {
        cmd.env_remove(format!("AWS_ENDPOINT_URL_{service}"));
    }
    if let Some(endpoint) = endpoint_cloudtrail {
        cmd.env("AWS_ENDPOINT_URL_CLOUDTRAIL", endpoint);
    }
    // Without moto, IAM (the change analysis) refuses the connection at once: the analysis
    // degrades to "diff unavailable" instead of waiting for the real endpoint.
    cmd.env("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:9");
    if let Some(endpoint) = endpoint_moto {
        for service in ["CLOUDWATCH_LOGS", "SNS", "SQS", "IAM", "STS"] {
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
const SDK_TARGET: &str = "CloudTrail_20131101.LookupEvents";
/// The longer target header boto3 sends.
const BOTO_TARGET: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
const T0: i64 = 1_760_000_000;

/// A LookupEvents call with the SDK's headers and body.
fn lookup(server: &LookupServer, body: &Value) -> HttpReply {
    lookup_with_target(server, SDK_TARGET, body)
}

fn lookup_with_target(server: &LookupServer, target: &str, body: &Value) -> HttpReply {
    let body = serde_json::to_vec(body).expect("body serialises");
    http(
        server.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target),
            ("X-Amz-User-Agent", "aws-sdk-rust/1 api/cloudtrail/1"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/cloudtrail/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0"),
            ("X-Amz-Date", "20260101T000000Z"),
        ],
        &body,
    )
    .expect("the LookupEvents server answers")
}

#[track_caller]
fn assert_error(reply: &HttpReply, status: u16, code: &str) {
    assert_eq!(
        reply.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["__type"], code);
    assert!(reply.json()["message"].is_string());
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/x-amz-json-1.1")
    );
}

fn ids(reply: &Value) -> Vec<String> {
    reply["Events"]
        .as_array()
        .expect("Events is an array")
        .iter()
        .map(|e| e["EventId"].as_str().expect("EventId").to_owned())
        .collect()
}

/// 120 events one second apart from `T0`: `ev-000` … `ev-119`.
fn hundred_twenty(server: &LookupServer) {
    let records: Vec<Value> = (0..120)
        .map(|i| {
            let name = if i % 3 == 0 {
                "DetachRolePolicy"
            } else {
                "AttachRolePolicy"
            };
            cloudtrail_record(&format!("ev-{i:03}"), name, T0 + i)
        })
        .collect();
    assert_eq!(server.add_events(&records), 120);
}

#[test]
fn lookup_pages_are_50_50_20_newest_first_and_tokens_need_identical_params() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let params = json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 50});

    let mut all = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = params.clone();
        if let Some(token) = &token {
            body["NextToken"] = json!(token);
        }
        let reply = lookup(&server, &body);
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("Content-Type"),
            Some("application/x-amz-json-1.1")
        );
        let page = reply.json();
        sizes.push(page["Events"].as_array().unwrap().len());
        all.extend(ids(&page));
        match page.get("NextToken") {
            Some(next) => token = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [50, 50, 20]);
    let expected: Vec<String> = (0..120).rev().map(|i| format!("ev-{i:03}")).collect();
    assert_eq!(all, expected, "newest first, each event once");

    // A token is valid only with the parameters that produced it.
    let first = lookup(&server, &params).json();
    let token = first["NextToken"].clone();
    for changed in [
        json!({"StartTime": T0 + 1, "EndTime": T0 + 119, "MaxResults": 50}),
        json!({"StartTime": T0, "EndTime": T0 + 118, "MaxResults": 50}),
        json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 49}),
        json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 50,
               "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "AttachRolePolicy"}]}),
    ] {
        let mut body = changed;
        body["NextToken"] = token.clone();
        assert_error(&lookup(&server, &body), 400, "InvalidNextTokenException");
    }
    let mut garbage = params.clone();
    garbage["NextToken"] = json!("not-a-token");
    assert_error(&lookup(&server, &garbage), 400, "InvalidNextTokenException");

    // The record comes back as CloudTrail's compact JSON string, with the derived fields.
    let newest = &first["Events"][0];
    assert_eq!(newest["EventId"], "ev-119");
    assert_eq!(newest["EventName"], "AttachRolePolicy");
    assert_eq!(newest["EventSource"], "iam.amazonaws.com");
    assert_eq!(newest["Username"], "terraform-ci");
    assert_eq!(newest["ReadOnly"], "false");
    assert_eq!(newest["AccessKeyId"], "AKIAEXAMPLEKEY123456");
    assert_eq!(newest["EventTime"].as_f64(), Some((T0 + 119) as f64));
    assert_eq!(
        newest["Resources"],
        // In requestParameters order; serde_json sends object keys sorted.
        json!([
            {"ResourceType": "AWS::IAM::Policy", "ResourceName": "arn:aws:iam::aws:policy/AdministratorAccess"},
            {"ResourceType": "AWS::IAM::Role", "ResourceName": "astronomer-remote-management"}
        ])
    );
    let record = cloudtrail_record("ev-119", "AttachRolePolicy", T0 + 119);
    assert_eq!(
        newest["CloudTrailEvent"].as_str(),
        Some(serde_json::to_string(&record).unwrap().as_str())
    );
}

#[test]
fn lookup_time_window_is_inclusive_and_accepts_fractional_seconds() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let reply = lookup(&server, &json!({"StartTime": T0 + 10, "EndTime": T0 + 14}));
    assert_eq!(
        ids(&reply.json()),
        ["ev-014", "ev-013", "ev-012", "ev-011", "ev-010"]
    );
    let reply = lookup(
        &server,
        &json!({"StartTime": T0 as f64 + 9.5, "EndTime": T0 as f64 + 11.5}),
    );
    assert_eq!(ids(&reply.json()), ["ev-011", "ev-010"]);
    let reply = lookup(&server, &json!({"StartTime": T0 - 100, "EndTime": T0 - 1}));
    assert_eq!(
        reply.json(),
        json!({"Events": []}),
        "no NextToken on an empty last page"
    );
    let reply = lookup(&server, &json!({"StartTime": T0 + 5, "EndTime": T0}));
    assert_error(&reply, 400, "InvalidTimeRangeException");
    for max in [0, 51] {
        let reply = lookup(
            &server,
            &json!({"StartTime": T0, "EndTime": T0 + 5, "MaxResults": max}),
        );
        assert_error(&reply, 400, "InvalidMaxResultsException");
    }
    // boto3's longer target works too.
    let reply = lookup_with_target(
        &server,
        BOTO_TARGET,
        &json!({"StartTime": T0, "EndTime": T0}),
    );
    assert_eq!(ids(&reply.json()), ["ev-000"]);
}

#[test]
fn lookup_allows_one_attribute_and_filters_by_it() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let two = json!({"StartTime": T0, "EndTime": T0 + 119, "LookupAttributes": [
        {"AttributeKey": "EventName", "AttributeValue": "AttachRolePolicy"},
        {"AttributeKey": "EventSource", "AttributeValue": "iam.amazonaws.com"}
    ]});
    assert_error(
        &lookup(&server, &two),
        400,
        "InvalidLookupAttributesException",
    );
    let unknown = json!({"LookupAttributes": [{"AttributeKey": "Region", "AttributeValue": "x"}]});
    assert_error(
        &lookup(&server, &unknown),
        400,
        "InvalidLookupAttributesException",
    );

    let by_name = |name: &str| {
        json!({"StartTime": T0, "EndTime": T0 + 119, "MaxResults": 50, "LookupAttributes": [
            {"AttributeKey": "EventName", "AttributeValue": name}]})
    };
    let detach = lookup(&server, &by_name("DetachRolePolicy")).json();
    let expected: Vec<String> = (0..120)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| format!("ev-{i:03}"))
        .collect();
    assert_eq!(ids(&detach), expected);
    assert!(detach.get("NextToken").is_none());

    // 80 AttachRolePolicy events: two pages through the attribute's own index.
    let first = lookup(&server, &by_name("AttachRolePolicy")).json();
    assert_eq!(ids(&first).len(), 50);
    let mut next = by_name("AttachRolePolicy");
    next["NextToken"] = first["NextToken"].clone();
    let second = lookup(&server, &next).json();
    assert_eq!(ids(&second).len(), 30);
    assert!(second.get("NextToken").is_none());

    for (key, value, count) in [
        ("ResourceName", "astronomer-remote-management", 120),
        ("ResourceType", "AWS::IAM::Policy", 120),
        ("Username", "terraform-ci", 120),
        ("ReadOnly", "false", 120),
        ("ReadOnly", "true", 0),
        ("EventId", "ev-042", 1),
        ("AccessKeyId", "AKIAEXAMPLEKEY123456", 120),
        ("EventSource", "sts.amazonaws.com", 0),
    ] {
        let mut total = 0;
        let mut body = json!({"StartTime": T0, "EndTime": T0 + 119, "LookupAttributes": [
            {"AttributeKey": key, "AttributeValue": value}]});
        loop {
            let page = lookup(&server, &body).json();
            total += ids(&page).len();
            match page.get("NextToken") {
                Some(token) => body["NextToken"] = token.clone(),
                None => break,
            }
        }
        assert_eq!(total, count, "{key} = {value}");
    }
}

#[test]
fn lookup_throttling_fault_is_http_400_throttling_exception() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    server.faults(json!({"throttle_next": 2}));
    let body = json!({"StartTime": T0, "EndTime": T0 + 119});
    for _ in 0..2 {
        assert_error(&lookup(&server, &body), 400, "ThrottlingException");
    }
    assert_eq!(lookup(&server, &body).status, 200);
    let stats = server.stats();
    assert_eq!(stats["throttled"], 2);
    assert_eq!(stats["requests_total"], 3);

    // A sliding-window rate limit, like the account's 2 requests per second.
    server.reset();
    server.faults(json!({"rate_limit_per_sec": 2}));
    let statuses: Vec<u16> = (0..4).map(|_| lookup(&server, &body).status).collect();
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses[2..].iter().all(|&s| s == 400), "{statuses:?}");
    assert!(server.stats()["max_requests_in_1s"].as_u64().unwrap() >= 4);
}

#[test]
fn lookup_5xx_and_delay_faults() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let body = json!({"StartTime": T0, "EndTime": T0 + 119});
    server.faults(json!({"error_5xx_next": 1}));
    assert_error(&lookup(&server, &body), 503, "ServiceUnavailableException");
    server.faults(json!({"error_5xx_next": 1, "status_5xx": 500}));
    assert_error(&lookup(&server, &body), 500, "InternalFailure");
    assert_eq!(lookup(&server, &body).status, 200);
    assert_eq!(server.stats()["errors_5xx"], 2);

    server.faults(json!({"delay_ms": 400, "delay_next": 1}));
    let started = Instant::now();
    assert_eq!(lookup(&server, &body).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(lookup(&server, &body).status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "only the next reply is delayed"
    );
}

#[test]
fn lookup_late_events_appear_inside_already_polled_windows() {
    let server = LookupServer::start();
    server.add_events(&[cloudtrail_record("on-time", "AttachRolePolicy", T0 + 10)]);
    server.add_event_with(json!({
        "record": cloudtrail_record("late", "AttachRolePolicy", T0 + 5),
        "visible_after_ms": 1500,
    }));
    let body = json!({"StartTime": T0, "EndTime": T0 + 60});
    assert_eq!(ids(&lookup(&server, &body).json()), ["on-time"]);
    let stats = server.stats();
    assert_eq!(
        (
            stats["events_total"].as_u64(),
            stats["events_visible"].as_u64()
        ),
        (Some(2), Some(1))
    );
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(ids(&lookup(&server, &body).json()), ["on-time", "late"]);
}

#[test]
fn lookup_passes_a_malformed_cloudtrail_event_through_verbatim() {
    let server = LookupServer::start();
    let raw = "{\"eventVersion\":\"1.10\",\"eventID\":\"trunc";
    server.add_event_with(json!({
        "cloudtrail_event_raw": raw,
        "event_id": "malformed-1",
        "event_name": "AttachRolePolicy",
        "event_time": T0 + 1,
    }));
    // An ISO-8601 event_time overrides the record's eventTime (T0).
    let iso = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs((T0 + 2) as u64),
    )
    .to_string();
    server.add_event_with(json!({
        "record": cloudtrail_record("overridden", "AttachRolePolicy", T0),
        "cloudtrail_event_raw": "not json at all",
        "event_time": iso,
    }));
    let page = lookup(&server, &json!({"StartTime": T0 - 10, "EndTime": T0 + 10})).json();
    assert_eq!(ids(&page), ["overridden", "malformed-1"]);
    assert_eq!(page["Events"][0]["CloudTrailEvent"], "not json at all");
    assert_eq!(
        page["Events"][0]["EventTime"].as_f64(),
        Some((T0 + 2) as f64)
    );
    assert_eq!(page["Events"][1]["CloudTrailEvent"], raw);
    assert_eq!(page["Events"][1]["EventName"], "AttachRolePolicy");
}

#[test]
fn lookup_stats_count_requests_and_describe_recent_ones() {
    let server = LookupServer::start();
    hundred_twenty(&server);
    let attribute = json!({"AttributeKey": "EventName", "AttributeValue": "AttachRolePolicy"});
    let body = json!({"StartTime": T0, "EndTime": T0 + 119, "LookupAttributes": [attribute]});
    let first = lookup(&server, &body).json();
    let mut next = body.clone();
    next["NextToken"] = first["NextToken"].clone();
    assert_eq!(lookup(&server, &next).status, 200);
    let unknown = http(
        server.port(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "CloudTrail_20131101.DescribeTrails"),
        ],
        b"{}",
    )
    .unwrap();
    assert_error(&unknown, 400, "UnknownOperationException");

    let stats = server.stats();
    assert_eq!(stats["requests_total"], 3);
    assert_eq!(stats["by_operation"]["LookupEvents"], 2);
    assert_eq!(stats["by_operation"]["DescribeTrails"], 1);
    assert_eq!(stats["errors_4xx"], 1);
    assert!(stats["max_requests_in_1s"].as_u64().unwrap() >= 1);
    let recent = stats["recent_requests"].as_array().unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0]["attribute"], attribute);
    assert_eq!(recent[0]["start_time"], T0);
    assert_eq!(recent[0]["end_time"], T0 + 119);
    assert_eq!(recent[0]["token"], false);
    assert_eq!(recent[0]["returned"], 50);
    assert_eq!(recent[1]["token"], true);
    assert_eq!(recent[1]["returned"], 30);
    assert_eq!(recent[2]["status"], 400);
    assert!(recent[0]["time"].as_f64().unwrap() > 1.7e9);

    server.reset();
    let stats = server.stats();
    assert_eq!(
        (
            stats["requests_total"].as_u64(),
            stats["events_total"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[test]
fn lookup_server_exits_on_sigterm() {
    let mut server = LookupServer::start();
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait works") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn generator_output_loads_in_bulk_and_is_deterministic() {
    let generate = |seed: &str| {
        let output = Command::new(python())
            .arg(repo_root().join("tests/fixtures/cloudtrail/generate.py"))
            .args(["--count", "3000", "--seed", seed, "--watched-share", "0.05"])
            .args([
                "--start",
                "2026-01-01T00:00:00Z",
                "--end",
                "2026-01-08T00:00:00Z",
            ])
            .output()
            .expect("the generator runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let lines = generate("7");
    assert_eq!(lines, generate("7"), "the same seed gives the same bytes");
    assert_ne!(lines, generate("8"));

    let records: Vec<Value> = lines
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("each line is a record"))
        .collect();
    assert_eq!(records.len(), 3000);
    let unique: std::collections::HashSet<&str> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    assert_eq!(unique.len(), 3000);
    for record in &records {
        assert_eq!(record["awsRegion"], "us-east-1");
        let account = record["recipientAccountId"].as_str().unwrap();
        assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
    }
    let watched = records
        .iter()
        .filter(|r| {
            let params = &r["requestParameters"];
            let on_role = params["roleName"] == "astronomer-remote-management";
            let on_policy = params["policyArn"]
                .as_str()
                .is_some_and(|arn| arn.ends_with("policy/AstronomerCrossAccountRole"));
            r["readOnly"] == false && (on_role || on_policy)
        })
        .count();
    assert!((50..=250).contains(&watched), "{watched} watched of 3000");

    let server = LookupServer::start();
    assert_eq!(server.add_jsonl(&lines), 3000);
    // 2026-01-01T00:00:00Z .. 2026-01-08T00:00:00Z
    let window = json!({"StartTime": 1_767_225_600, "EndTime": 1_767_830_400});
    let mut count = 0;
    let mut last_time = f64::INFINITY;
    let mut body = window.clone();
    loop {
        let page = lookup(&server, &body).json();
        for event in page["Events"].as_array().unwrap() {
            let time = event["EventTime"].as_f64().unwrap();
            assert!(time <= last_time, "newest first");
            last_time = time;
            let record: Value =
                serde_json::from_str(event["CloudTrailEvent"].as_str().unwrap()).unwrap();
            assert_eq!(record["eventID"], event["EventId"]);
            count += 1;
        }
        match page.get("NextToken") {
            Some(token) => body["NextToken"] = token.clone(),
            None => break,
        }
    }
    assert_eq!(count, 3000);
}

/// The real SDK client against the server: the paginator, the target header, and the
/// throttling error code the poller's retry classification looks at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_server_speaks_to_the_real_sdk_client() {
    use aws_sdk_cloudtrail::config::retry::RetryConfig;
    use aws_sdk_cloudtrail::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_cloudtrail::error::ProvideErrorMetadata;
    use aws_sdk_cloudtrail::primitives::DateTime;
    use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};

    let server = tokio::task::block_in_place(|| {
        let server = LookupServer::start();
        hundred_twenty(&server);
        server
    });
    let config = aws_sdk_cloudtrail::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(server.endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    let client = aws_sdk_cloudtrail::Client::from_conf(config);

    let events = client
        .lookup_events()
        .start_time(DateTime::from_secs(T0))
        .end_time(DateTime::from_secs(T0 + 119))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("the paginator reads every page");
    let got: Vec<&str> = events.iter().map(|e| e.event_id().unwrap()).collect();
    let expected: Vec<String> = (0..120).rev().map(|i| format!("ev-{i:03}")).collect();
    assert_eq!(got, expected);
    assert_eq!(events[0].event_time(), Some(&DateTime::from_secs(T0 + 119)));
    assert_eq!(events[0].resources().len(), 2);
    let record: Value = serde_json::from_str(events[0].cloud_trail_event().unwrap()).unwrap();
    assert_eq!(record["eventID"], "ev-119");

    let detach = client
        .lookup_events()
        .start_time(DateTime::from_secs(T0))
        .end_time(DateTime::from_secs(T0 + 119))
        .lookup_attributes(
            LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::EventName)
                .attribute_value("DetachRolePolicy")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("one attribute is fine");
    assert_eq!(detach.events().len(), 40);
    assert!(detach.next_token().is_none());

    let faulted = tokio::task::block_in_place(|| server.faults(json!({"throttle_next": 1})));
    assert_eq!(faulted["throttle_next"], 1);
    let err = client.lookup_events().send().await.expect_err("throttled");
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));

    let stats = tokio::task::block_in_place(|| server.stats());
    let recent = stats["recent_requests"].as_array().unwrap();
    assert!(
        recent.iter().all(|r| r["target"] == SDK_TARGET),
        "{recent:?}"
    );
    assert_eq!(recent[0]["max_results"], Value::Null);
    assert!(recent
        .iter()
        .all(|r| r["content_type"] == "application/x-amz-json-1.1"));
    assert_eq!(stats["by_operation"]["LookupEvents"], 5);
}

#[test]
fn moto_starts_resets_and_accepts_cloudwatch_logs_json_calls() {
    let moto = Moto::start();
    let logs = |operation: &str, body: Value| {
        let target = format!("Logs_20140328.{operation}");
        http(
            moto.port(),
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", &target),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/logs/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0"),
                ("X-Amz-Date", "20260101T000000Z"),
            ],
            &serde_json::to_vec(&body).unwrap(),
        )
        .expect("moto answers")
    };
    let created = logs(
        "CreateLogGroup",
        json!({"logGroupName": "/aws/cloudtrail/rolewatch"}),
    );
    assert_eq!(
        created.status,
        200,
        "{}\nmoto log:\n{}",
        String::from_utf8_lossy(&created.body),
        moto.stderr()
    );
    let groups = logs("DescribeLogGroups", json!({})).json();
    assert_eq!(
        groups["logGroups"][0]["logGroupName"],
        "/aws/cloudtrail/rolewatch"
    );
    let again = logs(
        "CreateLogGroup",
        json!({"logGroupName": "/aws/cloudtrail/rolewatch"}),
    );
    assert_eq!(again.status, 400);
    assert!(again.json()["__type"]
        .as_str()
        .unwrap()
        .ends_with("ResourceAlreadyExistsException"));

    moto.reset();
    let groups = logs("DescribeLogGroups", json!({})).json();
    assert_eq!(groups["logGroups"], json!([]));
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
}

#[test]
fn aws_env_points_services_at_the_test_servers() {
    let mut cmd = Command::new("env");
    cmd.env("AWS_PROFILE", "production")
        .env("AWS_ENDPOINT_URL", "https://elsewhere.invalid");
    aws_env(
        &mut cmd,
        Some("http://127.0.0.1:1"),
        Some("http://127.0.0.1:2"),
    );
    let output = cmd.output().expect("env runs");
    let text = String::from_utf8(output.stdout).unwrap();
    let vars: std::collections::HashMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("AWS_ACCESS_KEY_ID"), Some(&"testing"));
    assert_eq!(vars.get("AWS_SECRET_ACCESS_KEY"), Some(&"testing"));
    assert_eq!(vars.get("AWS_REGION"), Some(&"us-east-1"));
    assert_eq!(vars.get("AWS_EC2_METADATA_DISABLED"), Some(&"true"));
    assert_eq!(
        vars.get("AWS_ENDPOINT_URL_CLOUDTRAIL"),
        Some(&"http://127.0.0.1:1")
    );
    for service in ["CLOUDWATCH_LOGS", "SNS", "SQS", "IAM", "STS"] {
        assert_eq!(
            vars.get(format!("AWS_ENDPOINT_URL_{service}").as_str()),
            Some(&"http://127.0.0.1:2")
        );
    }
    assert!(!vars.contains_key("AWS_PROFILE"));
    assert!(!vars.contains_key("AWS_ENDPOINT_URL"));
}

// ---------------------------------------------------------------------------------------
// Our CloudWatch Logs TestMetricFilter stand-in (moto 5.2.5 has none).
// ---------------------------------------------------------------------------------------

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

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        log_text(&self.stderr)
    }

    #[track_caller]
    fn control(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = serde_json::to_vec(body).expect("control body serialises");
        let reply = http(
            self.port,
            method,
            path,
            &[("Content-Type", "application/json")],
            &body,
        )
        .unwrap_or_else(|err| panic!("{method} {path} on the TestMetricFilter server: {err}"));
        assert_eq!(
            reply.status,
            200,
            "{method} {path} on the TestMetricFilter server: {}\nserver stderr:\n{}",
            String::from_utf8_lossy(&reply.body),
            self.stderr()
        );
        reply.json()
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
