//! The exporter's HTTP/1.1 client (docs/spec.md §13): one keep-alive connection, a POST per
//! batch, written and read with blocking std sockets on the export thread itself.
//!
//! Why not reqwest's blocking client: it runs a tokio runtime on a thread of its own and hands
//! each request over to it through channels (a hop and two wake-ups per batch), and its
//! request path (URL parse, redirect policy, proxy matcher, header map clones) cost more than
//! 10,000 instructions per batch. An OTLP export is one POST to one fixed URL whose answer is
//! only looked at for its status, so the request head is written once, at start.

use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// At most this much of an answer's body is read (an OTLP answer is a few bytes; a partial
/// success message a few hundred); past it the connection is closed.
const MAX_BODY: u64 = 1 << 20;

/// A POST target: `http://host[:port]/path`, its connection kept between batches.
#[derive(Debug)]
pub(crate) struct Poster {
    /// `host:port` to connect to.
    address: String,
    /// Everything of a request before its `Content-Length` value.
    head: Vec<u8>,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Poster {
    /// A client for `url` (plain `http://` only) sending `headers` and `content_type` with
    /// every request, each connect, write and read limited to `timeout`.
    pub(crate) fn new(
        url: &str,
        headers: &[(String, String)],
        content_type: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or_else(|| {
                format!(
                    "the OTLP endpoint {url:?} is not an http:// URL (the exporter speaks plain \
                     HTTP; put a collector or proxy on a local http:// address in front of a \
                     TLS one)"
                )
            })?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "the OTLP endpoint {url:?} needs a host (and takes no user:password@)"
            ));
        }
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let address = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let clean = |s: &str| !s.bytes().any(|b| b == b'\r' || b == b'\n');
        if !clean(&path) || path.contains(' ') || !clean(authority) {
            return Err(format!("the OTLP endpoint {url:?} is not a valid URL"));
        }
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\n\
             User-Agent: connector-runtime\r\n"
        )
        .into_bytes();
        for (name, value) in headers {
            if !clean(name) || !clean(value) {
                return Err(format!("the OTLP header {name:?} has a line break"));
            }
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        head.extend_from_slice(b"Content-Length: ");
        Ok(Poster {
            address,
            head,
            timeout,
            conn: None,
        })
    }

    /// POSTs the body made of `parts` (written one after the other, never copied into one
    /// buffer: a batch of spans is a few hundred KiB) and returns the answer's status. A
    /// kept connection the server has closed in the meantime is replaced once; any other
    /// failure drops the connection.
    pub(crate) fn post(&mut self, parts: &[&[u8]]) -> Result<u16, String> {
        let length: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = Vec::with_capacity(self.head.len() + 24);
        head.extend_from_slice(&self.head);
        head.extend_from_slice(length.to_string().as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        let mut message = Vec::with_capacity(1 + parts.len());
        message.push(head.as_slice());
        message.extend_from_slice(parts);
        let reused = self.conn.is_some();
        match self.exchange(&message) {
            Ok(status) => Ok(status),
            // Nothing came back on an idle connection: the server closed it; try a new one.
            Err(Failure::Stale) if reused => self.exchange(&message).map_err(Failure::into),
            Err(e) => Err(e.into()),
        }
    }

    fn exchange(&mut self, message: &[&[u8]]) -> Result<u16, Failure> {
        let result = self.try_exchange(message);
        if !matches!(result, Ok((_, true))) {
            self.conn = None;
        }
        result.map(|(status, _)| status)
    }

    /// Status, and whether the connection can be kept.
    fn try_exchange(&mut self, message: &[&[u8]]) -> Result<(u16, bool), Failure> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(self.connect()?));
        }
        let conn = self.conn.as_mut().expect("connected above");
        if write_all_vectored(conn.get_mut(), message).is_err() {
            return Err(Failure::Stale);
        }
        let mut line = String::new();
        match conn.read_line(&mut line) {
            Ok(0) => return Err(Failure::Stale),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(Failure::Stale)
            }
            Err(e) => return Err(Failure::Other(format!("no answer: {e}"))),
        }
        let status = line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| Failure::Other(format!("not an HTTP answer: {:?}", line.trim_end())))?;
        let keep_alive_default = line.starts_with("HTTP/1.1");
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = !keep_alive_default;
        loop {
            line.clear();
            let read = conn
                .read_line(&mut line)
                .map_err(|e| Failure::Other(format!("answer cut short: {e}")))?;
            if read == 0 {
                return Err(Failure::Other("answer cut short".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let value = value.to_ascii_lowercase();
                close = value.contains("close") || (close && !value.contains("keep-alive"));
            }
        }
        let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
        if bodiless {
            return Ok((status, !close));
        }
        if chunked {
            let mut total = 0u64;
            loop {
                line.clear();
                conn.read_line(&mut line)
                    .map_err(|e| Failure::Other(format!("answer cut short: {e}")))?;
                let size = line.trim_end().split(';').next().unwrap_or_default();
                let size = u64::from_str_radix(size.trim(), 16)
                    .map_err(|_| Failure::Other("a malformed chunked answer".into()))?;
                total += size;
                if total > MAX_BODY {
                    return Ok((status, false));
                }
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        line.clear();
                        let read = conn
                            .read_line(&mut line)
                            .map_err(|e| Failure::Other(format!("answer cut short: {e}")))?;
                        if read == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    return Ok((status, !close));
                }
                skip(conn, size + 2)?;
            }
        }
        match length {
            Some(n) if n <= MAX_BODY => {
                skip(conn, n)?;
                Ok((status, !close))
            }
            Some(_) => Ok((status, false)),
            None => {
                // Delimited by the end of the connection.
                let _ = std::io::copy(&mut conn.by_ref().take(MAX_BODY), &mut std::io::sink());
                Ok((status, false))
            }
        }
    }

    fn connect(&self) -> Result<TcpStream, Failure> {
        let addrs = self
            .address
            .to_socket_addrs()
            .map_err(|e| Failure::Other(format!("cannot resolve {}: {e}", self.address)))?;
        let mut last = format!("{} has no address", self.address);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(self.timeout));
                    let _ = stream.set_write_timeout(Some(self.timeout));
                    return Ok(stream);
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(Failure::Other(last))
    }
}

/// Reads and discards `n` bytes.
fn skip(conn: &mut BufReader<TcpStream>, n: u64) -> Result<(), Failure> {
    let copied = std::io::copy(&mut conn.by_ref().take(n), &mut std::io::sink())
        .map_err(|e| Failure::Other(format!("answer cut short: {e}")))?;
    if copied < n {
        return Err(Failure::Other("answer cut short".into()));
    }
    Ok(())
}

enum Failure {
    /// The connection was closed before anything came back.
    Stale,
    Other(String),
}

impl From<Failure> for String {
    fn from(failure: Failure) -> String {
        match failure {
            Failure::Stale => "the collector closed the connection without answering".into(),
            Failure::Other(message) => message,
        }
    }
}

/// Writes every part in as few `writev` calls as the socket takes.
fn write_all_vectored(out: &mut impl Write, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut left = &mut slices[..];
    IoSlice::advance_slices(&mut left, 0);
    while !left.is_empty() {
        match out.write_vectored(left) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers each request with the next of `answers`, and
    /// the requests it read.
    fn serve(answers: Vec<&'static str>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for answer in answers {
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.push(format!("{head}{}", String::from_utf8_lossy(&body)));
                reader.get_mut().write_all(answer.as_bytes()).unwrap();
            }
            seen
        });
        (url, handle)
    }

    #[test]
    fn posts_over_one_kept_connection_and_reads_each_answer_whatever_its_framing() {
        let (url, server) = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        ]);
        let headers = [("x-tenant".to_string(), "a b".to_string())];
        let mut poster = Poster::new(
            &url,
            &headers,
            "application/x-protobuf",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(poster.post(&[b"o", b"", b"ne"]), Ok(200));
        assert_eq!(poster.post(&[b"two"]), Ok(200));
        assert_eq!(poster.post(&[b"three"]), Ok(503));
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3, "one connection carried the three requests");
        assert!(
            seen[0].starts_with("POST /v1/traces HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains("\r\nContent-Type: application/x-protobuf\r\n"));
        assert!(seen[0].contains("\r\nx-tenant: a b\r\n"));
        assert!(
            seen[0].ends_with("Content-Length: 3\r\n\r\none"),
            "{}",
            seen[0]
        );
        assert!(seen[2].ends_with("three"));
    }

    #[test]
    fn a_closed_kept_connection_is_replaced_and_a_refused_one_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while line != "\r\n" {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                }
                let mut body = [0u8; 1];
                reader.read_exact(&mut body).unwrap();
                // Answer, then close: the client must not reuse it.
                reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
            }
        });
        let mut poster =
            Poster::new(&url, &[], "application/x-protobuf", Duration::from_secs(5)).unwrap();
        assert_eq!(poster.post(&[b"a"]), Ok(200));
        // The server dropped the first connection after answering.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(poster.post(&[b"b"]), Ok(200));
        server.join().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", closed.local_addr().unwrap());
        drop(closed);
        let mut poster =
            Poster::new(&url, &[], "application/x-protobuf", Duration::from_secs(1)).unwrap();
        assert!(poster.post(&[b"x"]).unwrap_err().contains("cannot connect"));
    }

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        let make = |url: &str| Poster::new(url, &[], "a/b", Duration::from_secs(1));
        assert!(make("https://collector:4318/v1/traces")
            .unwrap_err()
            .contains("not an http:// URL"));
        assert!(make("http:///v1/traces")
            .unwrap_err()
            .contains("needs a host"));
        assert!(make("http://u:p@collector/v1/traces").is_err());
        let poster = make("HTTP://collector/v1/traces").unwrap();
        assert_eq!(poster.address, "collector:80");
        let poster = make("http://[::1]:4318/v1/traces").unwrap();
        assert_eq!(poster.address, "[::1]:4318");
        let poster = make("http://[::1]/v1/traces").unwrap();
        assert_eq!(poster.address, "[::1]:80");
    }
}
