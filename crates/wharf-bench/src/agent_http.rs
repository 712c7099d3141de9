//! The simulated agents' HTTP/1.1 client: keep-alive TCP connections to the server,
//! each request written whole and its answer read by the agent's own task.
//!
//! The real agent uses reqwest. The swarm does not, because its 10,000 agents share
//! the two cores of the server being measured, so every microsecond the swarm spends
//! per request is taken from the server. reqwest's pooled client runs each
//! connection as a task of its own and passes every request and answer between
//! tasks; on machine E that cost the swarm about 100 µs of CPU per request. What
//! goes over the wire is the same: ordinary HTTP/1.1 requests with the headers the
//! agent sends, answered by the real server.

use anyhow::{bail, Context as _};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A pooled connection idle longer than this is closed rather than reused: the
/// server may have closed it meanwhile.
const POOLED_IDLE_LIMIT: Duration = Duration::from_secs(20);
/// The most response headers an answer may have.
const MAX_HEADERS: usize = 32;

/// An answer: its status and whole body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Retry-After` header in seconds, if the answer had one.
    pub retry_after: Option<Duration>,
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buffer: Vec<u8>,
    last_used: Instant,
}

/// The server's address and the connections that are free for reuse.
pub struct Client {
    address: SocketAddr,
    /// `host:port`, for the Host header.
    host: String,
    /// Oldest freed first, so that steady traffic (heartbeats) keeps every one
    /// of them in use and none grows old.
    idle: Mutex<VecDeque<Conn>>,
    max_idle: usize,
    timeout: Duration,
}

impl Client {
    /// A client of the server at `url` (`http://IP:PORT`), keeping at most
    /// `max_idle` connections for reuse and giving each exchange `timeout`.
    pub fn new(url: &str, max_idle: usize, timeout: Duration) -> anyhow::Result<Self> {
        let host = url
            .strip_prefix("http://")
            .with_context(|| format!("{url} is not an http:// URL"))?
            .trim_end_matches('/')
            .to_owned();
        let address = host
            .parse()
            .with_context(|| format!("{host} is not an IP address and port"))?;
        Ok(Self {
            address,
            host,
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            timeout,
        })
    }

    /// The bytes of a request: `authorization` is the whole header value, `body`
    /// JSON.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        authorization: &str,
        body: Option<&str>,
    ) -> Vec<u8> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\n{}: {}\r\nauthorization: {authorization}\r\n",
            self.host,
            crate::swarm::PROTOCOL_HEADER,
            crate::swarm::PROTOCOL_VERSION,
        );
        if let Some(body) = body {
            request.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        request.into_bytes()
    }

    /// A new connection.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("connecting to {}", self.address))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        Ok(Conn {
            stream,
            buffer: Vec::with_capacity(1024),
            last_used: Instant::now(),
        })
    }

    /// Sends `request` on its own connection `conn` (opened first if there is
    /// none), which is dropped if the exchange fails.
    pub async fn send_on(&self, conn: &mut Option<Conn>, request: &[u8]) -> anyhow::Result<Answer> {
        let mut open = match conn.take() {
            Some(open) => open,
            None => self.connect().await?,
        };
        let (answer, reusable) = self.exchange(&mut open, request).await?;
        if reusable {
            *conn = Some(open);
        }
        Ok(answer)
    }

    /// Sends `request` on a free connection, or a new one, and frees it again
    /// after a whole answer. A reused connection that the server had closed is
    /// tried once more on a new one.
    pub async fn send(&self, request: &[u8]) -> anyhow::Result<Answer> {
        let reused = self.take_idle();
        let retry = reused.is_some();
        let mut conn = match reused {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let (answer, reusable) = match self.exchange(&mut conn, request).await {
            // Closed by the server while it was free: it failed at once and
            // nothing of an answer came (a timeout is not retried).
            Err(err)
                if retry
                    && conn.buffer.is_empty()
                    && err.downcast_ref::<tokio::time::error::Elapsed>().is_none() =>
            {
                conn = self.connect().await?;
                self.exchange(&mut conn, request).await?
            }
            outcome => outcome?,
        };
        if reusable {
            conn.last_used = Instant::now();
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < self.max_idle {
                    idle.push_back(conn);
                }
            }
        }
        Ok(answer)
    }

    /// Opens `count` connections and keeps them free for reuse, as a fleet's
    /// agents each hold a connection open between heartbeats: without them, the
    /// first batch's agents would all connect at once to report, which real
    /// agents, already connected, do not.
    pub async fn warm(&self, count: usize) -> anyhow::Result<()> {
        for _ in 0..count.min(self.max_idle) {
            let conn = self.connect().await?;
            if let Ok(mut idle) = self.idle.lock() {
                idle.push_back(conn);
            }
        }
        Ok(())
    }

    /// The connection that has been free the longest, unless it is too old.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(conn) = idle.pop_front() {
            if conn.last_used.elapsed() < POOLED_IDLE_LIMIT {
                return Some(conn);
            }
        }
        None
    }

    /// Writes the request and reads its answer; also says whether the connection
    /// may carry another request.
    async fn exchange(&self, conn: &mut Conn, request: &[u8]) -> anyhow::Result<(Answer, bool)> {
        tokio::time::timeout(self.timeout, conn.exchange(request))
            .await
            .context("no answer in time")?
    }
}

impl Conn {
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(Answer, bool)> {
        self.buffer.clear();
        self.stream.write_all(request).await.context("sending")?;
        let (status, head_len, length, close, retry_after) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buffer).context("the answer's head")? {
                httparse::Status::Complete(head_len) => {
                    let status = response.code.context("a status")?;
                    let (length, close) = framing(response.headers)?;
                    let retry_after = response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    break (status, head_len, length, close, retry_after);
                }
                httparse::Status::Partial => self.fill().await?,
            }
        };
        // 204 and 304 have no body whatever their headers say.
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else {
            match length {
                Some(length) => {
                    while self.buffer.len() < head_len + length {
                        self.fill().await?;
                    }
                    self.buffer[head_len..head_len + length].to_vec()
                }
                None => bail!("an answer without content-length (status {status})"),
            }
        };
        Ok((
            Answer {
                status,
                body,
                retry_after,
            },
            !close,
        ))
    }

    /// Reads more of the answer; the end of the stream is an error here.
    async fn fill(&mut self) -> anyhow::Result<()> {
        let before = self.buffer.len();
        self.buffer.reserve(4096);
        let read = self
            .stream
            .read_buf(&mut self.buffer)
            .await
            .context("reading")?;
        if read == 0 {
            bail!(
                "the server closed the connection ({} bytes of an answer read)",
                before
            );
        }
        Ok(())
    }
}

/// The body's length and whether the server will close the connection. The
/// server frames every answer it sends an agent with a content-length; a chunked
/// one is an error here, never misread.
fn framing(headers: &[httparse::Header<'_>]) -> anyhow::Result<(Option<usize>, bool)> {
    let mut length = None;
    let mut close = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).context("content-length")?;
            length = Some(text.trim().parse().context("content-length")?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked answer: the swarm's client reads only content-length bodies");
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok((length, close))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A one-connection server that answers each request read with the next of
    /// `answers`, and returns what it was sent.
    async fn serve(answers: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for answer in answers {
                let mut chunk = [0u8; 4096];
                let read = stream.read(&mut chunk).await.unwrap();
                seen.extend_from_slice(&chunk[..read]);
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
            seen
        });
        (url, server)
    }

    #[tokio::test]
    async fn reads_answers_by_content_length_and_reuses_the_connection() {
        let (url, server) = serve(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"a\":true}\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
        ])
        .await;
        let client = Client::new(&url, 4, Duration::from_secs(5)).unwrap();
        let mut conn = None;
        let request = client.request("POST", "/agent/v1/heartbeat", "Bearer x", Some("{}"));
        let first = client.send_on(&mut conn, &request).await.unwrap();
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"{\"a\":true}\n"[..])
        );
        assert!(conn.is_some(), "the connection is kept");
        let poll = client.request("GET", "/agent/v1/work?wait_secs=1", "Bearer x", None);
        let second = client.send_on(&mut conn, &poll).await.unwrap();
        assert_eq!((second.status, second.body.len()), (204, 0));
        let sent = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(
            sent.starts_with("POST /agent/v1/heartbeat HTTP/1.1\r\nhost: 127.0.0.1:"),
            "{sent}"
        );
        assert!(
            sent.contains("\r\nx-wharf-agent-protocol: 2\r\nauthorization: Bearer x\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("content-length: 2\r\n\r\n{}GET /agent/v1/work?wait_secs=1 HTTP/1.1\r\n"),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn a_closing_or_unframed_answer_is_never_misread() {
        let (url, server) = serve(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        ])
        .await;
        let client = Client::new(&url, 4, Duration::from_secs(5)).unwrap();
        let mut conn = None;
        let request = client.request("GET", "/", "Bearer x", None);
        let answer = client.send_on(&mut conn, &request).await.unwrap();
        assert_eq!(answer.body, b"ok");
        assert!(conn.is_none(), "a connection the server closes is not kept");
        server.await.unwrap();

        let (url, _server) = serve(vec![
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ])
        .await;
        let client = Client::new(&url, 4, Duration::from_secs(5)).unwrap();
        let err = client.send_on(&mut None, &request).await.err().unwrap();
        assert!(format!("{err:#}").contains("chunked"), "{err:#}");

        let (url, _server) =
            serve(vec!["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]).await;
        let client = Client::new(&url, 4, Duration::from_millis(500)).unwrap();
        assert!(client.send_on(&mut None, &request).await.is_err());
    }

    #[tokio::test]
    async fn a_pooled_connection_the_server_closed_is_retried_on_a_new_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut answered = 0;
            // The first connection answers once and closes without saying so;
            // the second answers the retried request.
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut chunk = [0u8; 4096];
                let _ = stream.read(&mut chunk).await.unwrap();
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1")
                    .await
                    .unwrap();
                answered += 1;
            }
            answered
        });
        let client = Client::new(&url, 4, Duration::from_secs(5)).unwrap();
        let request = client.request("POST", "/agent/v1/heartbeat", "Bearer x", Some("{}"));
        assert_eq!(client.send(&request).await.unwrap().body, b"1");
        // Give the server's close time to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(client.send(&request).await.unwrap().body, b"1");
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn warmed_connections_carry_requests_without_connecting_again() {
        let (url, accepted) = counting_server(|mut stream| {
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while stream.read(&mut chunk).await.unwrap_or(0) > 0 {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        })
        .await;
        let client = Arc::new(Client::new(&url, 4, Duration::from_secs(5)).unwrap());
        client.warm(2).await.unwrap();
        let request = client.request("POST", "/agent/v1/heartbeat", "Bearer x", Some("{}"));
        for _ in 0..3 {
            let both = futures::future::join(client.send(&request), client.send(&request)).await;
            assert_eq!(
                (both.0.unwrap().body, both.1.unwrap().body),
                (b"1".to_vec(), b"1".to_vec())
            );
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_that_times_out_is_not_retried() {
        // Connections are taken and never answered.
        let held = Arc::new(Mutex::new(Vec::new()));
        let (url, accepted) = counting_server(move |stream| {
            if let Ok(mut held) = held.lock() {
                held.push(stream);
            }
        })
        .await;
        let client = Client::new(&url, 4, Duration::from_millis(300)).unwrap();
        client.warm(1).await.unwrap();
        let request = client.request("POST", "/agent/v1/heartbeat", "Bearer x", Some("{}"));
        let err = client.send(&request).await.err().expect("no answer");
        assert!(format!("{err:#}").contains("no answer in time"), "{err:#}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A server on a free port that hands each connection it accepts to
    /// `serve`; with its URL and how many connections it has accepted.
    async fn counting_server(
        serve: impl Fn(tokio::net::TcpStream) + Send + 'static,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                serve(stream);
            }
        });
        (url, accepted)
    }
}
