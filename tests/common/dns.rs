//! A DNS server on a loopback address whose answers change from one lookup to the next,
//! for the DNS-rebinding tests: the real binary is pointed at it through its own
//! `/etc/resolv.conf` (a private mount namespace, see [`crate::common::process::Launch`]),
//! so the runtime's ordinary resolution (glibc `getaddrinfo`) asks it over UDP.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One question the server was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name asked for, lower case, without the final dot.
    pub name: String,
    /// The record type (1 = A, 28 = AAAA).
    pub qtype: u16,
    /// The query id (a resend of the same lookup keeps its id).
    pub id: u16,
}

/// A running DNS server: `name` is answered with the A record `answers[n]` for its n-th
/// lookup (the last one again once they run out); AAAA questions for it get no records and
/// other names do not exist.
pub struct RebindingDns {
    /// Where it listens (port 53 of a loopback address of its own).
    pub addr: SocketAddr,
    questions: Arc<Mutex<Vec<Question>>>,
    stop: Arc<AtomicBool>,
}

impl RebindingDns {
    /// Starts the server on port 53 of a free address in 127.53.0.0/16 (resolv.conf cannot
    /// name a port; binding 53 needs root, as the mount namespace does).
    pub fn start(name: &str, answers: Vec<Ipv4Addr>) -> RebindingDns {
        assert!(!answers.is_empty());
        let seed = std::process::id() as usize;
        let socket = (0..200)
            .map(|i| {
                let n = (seed + i * 7919) % 60_000;
                Ipv4Addr::new(127, 53, (n / 250) as u8, (n % 250 + 2) as u8)
            })
            .find_map(|ip| UdpSocket::bind((ip, 53)).ok())
            .expect("a loopback address with port 53 free (the DNS tests run as root)");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let questions = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (seen, stopped) = (questions.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            // The ids of the lookups of `name` so far, in order: a resend (same id) gets the
            // same answer as the first copy.
            let mut lookups: Vec<u16> = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Some((question, question_end)) = parse_question(&buf[..len]) else {
                    continue;
                };
                seen.lock().unwrap().push(question.clone());
                let answer = if question.name != name {
                    None
                } else if question.qtype == 1 {
                    let n = match lookups.iter().position(|id| *id == question.id) {
                        Some(n) => n,
                        None => {
                            lookups.push(question.id);
                            lookups.len() - 1
                        }
                    };
                    Some(Some(answers[n.min(answers.len() - 1)]))
                } else {
                    Some(None)
                };
                let reply = build_reply(&buf[..question_end], answer);
                let _ = socket.send_to(&reply, from);
            }
        });
        RebindingDns {
            addr,
            questions,
            stop,
        }
    }

    /// `/etc/resolv.conf` text that sends every lookup to this server only, once.
    pub fn resolv_conf(&self) -> String {
        format!(
            "nameserver {}\noptions timeout:5 attempts:1\n",
            self.addr.ip()
        )
    }

    /// Every question so far.
    pub fn questions(&self) -> Vec<Question> {
        self.questions.lock().unwrap().clone()
    }

    /// How many distinct A lookups of `name` there were.
    pub fn lookups_of(&self, name: &str) -> usize {
        let mut ids: Vec<u16> = self
            .questions()
            .into_iter()
            .filter(|q| q.name == name && q.qtype == 1)
            .map(|q| q.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

impl Drop for RebindingDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The one question of a query and where it ends.
fn parse_question(packet: &[u8]) -> Option<(Question, usize)> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 || packet[4..6] != [0, 1] {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = *packet.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(packet.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(i)?, *packet.get(i + 1)?]);
    packet.get(i + 3)?;
    Some((
        Question {
            name: labels.join("."),
            qtype,
            id,
        },
        i + 4,
    ))
}

/// The reply to `query` (its header and question): `None` = the name does not exist,
/// `Some(None)` = no records of that type, `Some(Some(ip))` = one A record, TTL 0.
fn build_reply(query: &[u8], answer: Option<Option<Ipv4Addr>>) -> Vec<u8> {
    let rd = query[2] & 0x01;
    let rcode = if answer.is_none() { 3 } else { 0 };
    let record = answer.flatten();
    let mut reply = Vec::with_capacity(query.len() + 16);
    reply.extend_from_slice(&query[..2]);
    reply.extend_from_slice(&[0x84 | rd, 0x80 | rcode]); // QR, AA, RD as asked; RA
    reply.extend_from_slice(&[0, 1, 0, u8::from(record.is_some()), 0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..]);
    if let Some(ip) = record {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    reply
}
