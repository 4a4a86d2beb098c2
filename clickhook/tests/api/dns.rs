//! A DNS server on loopback for the tests: answers A and AAAA queries from a table the test
//! sets, following CNAMEs within it, as a recursive resolver would. No test asks a real one.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, LazyLock, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

#[derive(Debug, Clone)]
pub enum Rec {
    Cname(String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
}

pub struct FakeDns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<HashMap<String, Vec<Rec>>>>,
    /// How many queries it answered, by name.
    asked: Arc<Mutex<HashMap<String, usize>>>,
}

static SHARED: LazyLock<FakeDns> = LazyLock::new(FakeDns::start);

/// The DNS server every test server in this process asks (`--resolver`).
pub fn dns() -> &'static FakeDns {
    &SHARED
}

impl FakeDns {
    fn start() -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let zone: Arc<Mutex<HashMap<String, Vec<Rec>>>> = Arc::default();
        let asked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (z, a) = (zone.clone(), asked.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let reply = answer(&query, &z.lock().unwrap(), &a);
                let _ = socket.send_to(&reply.to_vec().unwrap(), from);
            }
        });
        FakeDns { addr, zone, asked }
    }

    /// Sets a name's records (lower case, no trailing dot); none makes it NXDOMAIN.
    pub fn set(&self, name: &str, records: Vec<Rec>) {
        let mut zone = self.zone.lock().unwrap();
        if records.is_empty() {
            zone.remove(name);
        } else {
            zone.insert(name.to_string(), records);
        }
    }

    /// Queries answered for `name` so far.
    pub fn asked(&self, name: &str) -> usize {
        self.asked.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

fn answer(query: &Message, zone: &HashMap<String, Vec<Rec>>, asked: &Mutex<HashMap<String, usize>>) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(q.clone());
    let asked_name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    *asked.lock().unwrap().entry(asked_name.clone()).or_default() += 1;
    let mut name = asked_name;
    for _ in 0..8 {
        let Some(records) = zone.get(&name) else {
            if reply.answers.is_empty() {
                reply.metadata.response_code = ResponseCode::NXDomain;
            }
            return reply;
        };
        let owner = Name::from_ascii(format!("{name}.")).unwrap();
        if let Some(Rec::Cname(to)) = records.iter().find(|r| matches!(r, Rec::Cname(_))) {
            let target = Name::from_ascii(format!("{to}.")).unwrap();
            reply.add_answer(Record::from_rdata(owner, 60, RData::CNAME(CNAME(target))));
            name = to.clone();
            continue;
        }
        for r in records {
            let data = match (r, q.query_type()) {
                (Rec::A(ip), RecordType::A) => RData::A(A(*ip)),
                (Rec::Aaaa(ip), RecordType::AAAA) => RData::AAAA(AAAA(*ip)),
                _ => continue,
            };
            reply.add_answer(Record::from_rdata(owner.clone(), 60, data));
        }
        return reply;
    }
    reply
}
