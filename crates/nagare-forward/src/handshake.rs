//! The `<security>` handshake (HELO / PING / PONG), server and client side, as pure
//! functions: randomness is passed in, digests follow the spec exactly.
//!
//! * `shared_key_hexdigest = hex(SHA512(salt + hostname + nonce + shared_key))`
//! * `password_hexdigest = hex(SHA512(auth_salt + username + password))`

use std::net::IpAddr;

use nagare_core::msgpack::{
    Head, read_head, value_len, write_array_header, write_map_header, write_str,
};
use nagare_core::record::map_get;
use rand::RngCore;
use sha2::{Digest, Sha512};

/// Handshake failures seen by a client, or malformed handshake messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The HELO is not `["HELO", {...}]`.
    #[error("invalid HELO message")]
    InvalidHelo,
    /// The PONG is not a 5-element `["PONG", ...]`.
    #[error("invalid format for PONG message")]
    InvalidPong,
    /// The server refused us.
    #[error("authentication failed: {0}")]
    Rejected(String),
    /// The server's hostname equals ours.
    #[error("same hostname between input and output: invalid configuration")]
    SameHostname,
    /// The server's digest does not match our shared key.
    #[error("shared key mismatch")]
    SharedKeyMismatch,
    /// The server wants user auth and we have no credentials.
    #[error("username and password are required")]
    CredentialsRequired,
}

/// An IP network from `<client network ...>` or a resolved `<client host ...>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `"10.0.0.0/8"`, `"192.168.1.5"`, `"::1"` or `"fe80::/10"` (host bits are masked
    /// off, as Ruby's `IPAddr.new` does).
    pub fn parse(s: &str) -> Option<Network> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = p.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Network {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// A single address.
    pub fn host(addr: IpAddr) -> Network {
        Network {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 peers match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

/// A `<user>` of `<security>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `username`.
    pub username: String,
    /// `password` (plain, as in Fluentd's config).
    pub password: String,
}

/// A `<client>` of `<security>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRule {
    /// The resolved `host` or the `network`.
    pub network: Network,
    /// `shared_key` for this client (falls back to the section's).
    pub shared_key: Option<String>,
    /// `users` allowed from this client (empty: every user).
    pub users: Vec<String>,
}

/// in_forward's `<security>` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Security {
    /// `self_hostname`.
    pub self_hostname: String,
    /// `shared_key`.
    pub shared_key: String,
    /// `user_auth`.
    pub user_auth: bool,
    /// `allow_anonymous_source` (Fluentd's default is true).
    pub allow_anonymous_source: bool,
    /// `<user>` sections.
    pub users: Vec<User>,
    /// `<client>` sections.
    pub clients: Vec<ClientRule>,
}

/// `hex(SHA512(parts...))`, lowercase.
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's side of one connection's handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHandshake {
    /// The nonce sent in HELO.
    pub nonce: [u8; 16],
    /// The auth salt sent in HELO (empty without `user_auth`).
    pub auth_salt: Vec<u8>,
    /// The HELO's `keepalive` (`!deny_keepalive`).
    pub keepalive: bool,
}

/// A successful PING check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The client's hostname from PING.
    pub hostname: String,
    /// The username, when user auth is on.
    pub username: Option<String>,
}

/// The result of [`ServerHandshake::check_ping`]: the PONG to send and the verdict. On
/// `Err`, send the PONG and close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingOutcome {
    /// The PONG message bytes.
    pub pong: Vec<u8>,
    /// The client, or the reason it was refused (also in the PONG).
    pub result: Result<Authenticated, String>,
}

impl ServerHandshake {
    /// Starts a handshake with fresh random nonce and salt.
    pub fn new(security: &Security, keepalive: bool) -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let auth_salt = if security.user_auth {
            let mut s = vec![0u8; 16];
            rng.fill_bytes(&mut s);
            s
        } else {
            Vec::new()
        };
        ServerHandshake {
            nonce,
            auth_salt,
            keepalive,
        }
    }

    /// `["HELO", {"nonce": bin, "auth": bin or "", "keepalive": bool}]`.
    pub fn helo(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        write_array_header(&mut out, 2);
        write_str(&mut out, b"HELO");
        write_map_header(&mut out, 3);
        write_str(&mut out, b"nonce");
        out.extend_from_slice(&[0xc4, 16]);
        out.extend_from_slice(&self.nonce);
        write_str(&mut out, b"auth");
        if self.auth_salt.is_empty() {
            write_str(&mut out, b"");
        } else {
            out.extend_from_slice(&[0xc4, self.auth_salt.len() as u8]);
            out.extend_from_slice(&self.auth_salt);
        }
        write_str(&mut out, b"keepalive");
        out.push(if self.keepalive { 0xc3 } else { 0xc2 });
        out
    }

    /// Checks a PING (one complete msgpack value) from `remote`, in Fluentd's order:
    /// format, anonymous source, shared key, then users.
    pub fn check_ping(&self, security: &Security, ping: &[u8], remote: IpAddr) -> PingOutcome {
        let result = self.verify(security, ping, remote);
        let pong = match &result {
            Ok((_, salt, key)) => {
                let digest = sha512_hex(&[
                    salt,
                    security.self_hostname.as_bytes(),
                    &self.nonce,
                    key.as_bytes(),
                ]);
                encode_pong(true, "", &security.self_hostname, &digest)
            }
            Err(reason) => encode_pong(false, reason, "", ""),
        };
        PingOutcome {
            pong,
            result: result.map(|(a, _, _)| a),
        }
    }

    fn verify<'p>(
        &self,
        security: &'p Security,
        ping: &'p [u8],
        remote: IpAddr,
    ) -> Result<(Authenticated, &'p [u8], &'p str), String> {
        let invalid = || "invalid ping message".to_owned();
        let fields = parse_str_array::<6>(ping).ok_or_else(invalid)?;
        let [kind, hostname, salt, key_digest, username, password_digest] = fields;
        if kind != b"PING" {
            return Err(invalid());
        }
        let node = security.clients.iter().find(|c| c.network.contains(remote));
        if node.is_none() && !security.allow_anonymous_source {
            return Err(format!(
                "anonymous source host '{}' denied",
                remote.to_canonical()
            ));
        }
        let shared_key = node
            .and_then(|n| n.shared_key.as_deref())
            .unwrap_or(&security.shared_key);
        let expect = sha512_hex(&[salt, hostname, &self.nonce, shared_key.as_bytes()]);
        if !ct_eq(expect.as_bytes(), key_digest) {
            return Err("shared_key mismatch".to_owned());
        }
        let mut user = None;
        if security.user_auth {
            let allowed =
                |u: &User| node.is_none_or(|n| n.users.is_empty() || n.users.contains(&u.username));
            let ok = security.users.iter().filter(|u| allowed(u)).any(|u| {
                let d = sha512_hex(&[&self.auth_salt, username, u.password.as_bytes()]);
                u.username.as_bytes() == username && ct_eq(d.as_bytes(), password_digest)
            });
            if !ok {
                return Err("username/password mismatch".to_owned());
            }
            user = Some(String::from_utf8_lossy(username).into_owned());
        }
        let auth = Authenticated {
            hostname: String::from_utf8_lossy(hostname).into_owned(),
            username: user,
        };
        Ok((auth, salt, shared_key))
    }
}

/// `["PONG", ok, reason, hostname, digest]`.
pub fn encode_pong(ok: bool, reason: &str, hostname: &str, digest: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    write_array_header(&mut out, 5);
    write_str(&mut out, b"PONG");
    out.push(if ok { 0xc3 } else { 0xc2 });
    write_str(&mut out, reason.as_bytes());
    write_str(&mut out, hostname.as_bytes());
    write_str(&mut out, digest.as_bytes());
    out
}

/// Reads an array of exactly `N` str/bin elements.
fn parse_str_array<const N: usize>(raw: &[u8]) -> Option<[&[u8]; N]> {
    let (Head::Array(n), mut at) = read_head(raw).ok()? else {
        return None;
    };
    if n as usize != N {
        return None;
    }
    let mut out = [&[][..]; N];
    for slot in &mut out {
        let rest = raw.get(at..)?;
        let (h, len) = read_head(rest).ok()?;
        *slot = h.str_or_bin()?;
        at += len;
    }
    Some(out)
}

/// A parsed HELO, client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helo {
    /// The nonce.
    pub nonce: Vec<u8>,
    /// The auth salt; empty when the server does not want user auth.
    pub auth: Vec<u8>,
    /// Whether the server keeps the connection open.
    pub keepalive: bool,
}

/// Reads a HELO (one complete msgpack value).
pub fn parse_helo(raw: &[u8]) -> Result<Helo, HandshakeError> {
    let bad = HandshakeError::InvalidHelo;
    let (Head::Array(2), n) = read_head(raw).map_err(|_| bad.clone())? else {
        return Err(bad);
    };
    let rest = raw.get(n..).unwrap_or_default();
    let first_len = value_len(rest).map_err(|_| bad.clone())?;
    if read_head(rest).ok().and_then(|(h, _)| h.str_or_bin()) != Some(b"HELO") {
        return Err(bad);
    }
    let opts = rest.get(first_len..).unwrap_or_default();
    let get = |k: &[u8]| {
        map_get(opts, k)
            .ok()
            .flatten()
            .and_then(|v| read_head(v).ok())
            .map(|(h, _)| h)
    };
    let bytes = |k: &[u8]| {
        get(k)
            .and_then(|h| h.str_or_bin())
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    };
    Ok(Helo {
        nonce: bytes(b"nonce"),
        auth: bytes(b"auth"),
        keepalive: !matches!(get(b"keepalive"), Some(Head::Bool(false))),
    })
}

/// A client's identity for the handshake (out_forward's `<security>` and `<server>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCredentials {
    /// `self_hostname`.
    pub hostname: String,
    /// `shared_key`.
    pub shared_key: String,
    /// `username`, when the server wants user auth.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
}

/// A fresh PING salt: 32 lowercase hex characters (`SecureRandom.hex(16)`).
pub fn generate_salt() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Builds the PING answering `helo` with `salt`.
pub fn encode_ping(
    helo: &Helo,
    creds: &ClientCredentials,
    salt: &str,
) -> Result<Vec<u8>, HandshakeError> {
    let digest = sha512_hex(&[
        salt.as_bytes(),
        creds.hostname.as_bytes(),
        &helo.nonce,
        creds.shared_key.as_bytes(),
    ]);
    let (user, pass) = if helo.auth.is_empty() {
        (String::new(), String::new())
    } else {
        let (Some(u), Some(p)) = (&creds.username, &creds.password) else {
            return Err(HandshakeError::CredentialsRequired);
        };
        (
            u.clone(),
            sha512_hex(&[&helo.auth, u.as_bytes(), p.as_bytes()]),
        )
    };
    let mut out = Vec::with_capacity(300);
    write_array_header(&mut out, 6);
    for f in ["PING", &creds.hostname, salt, &digest, &user, &pass] {
        write_str(&mut out, f.as_bytes());
    }
    Ok(out)
}

/// Checks a PONG (one complete msgpack value) against our PING's salt.
pub fn check_pong(
    raw: &[u8],
    helo: &Helo,
    creds: &ClientCredentials,
    salt: &str,
) -> Result<(), HandshakeError> {
    let (Head::Array(5), mut at) = read_head(raw).map_err(|_| HandshakeError::InvalidPong)? else {
        return Err(HandshakeError::InvalidPong);
    };
    let mut heads = Vec::with_capacity(5);
    for _ in 0..5 {
        let (h, n) = raw
            .get(at..)
            .and_then(|r| read_head(r).ok())
            .ok_or(HandshakeError::InvalidPong)?;
        heads.push(h);
        at += n;
    }
    let text = |i: usize| {
        heads
            .get(i)
            .and_then(|h| h.str_or_bin())
            .unwrap_or_default()
    };
    if text(0) != b"PONG" {
        return Err(HandshakeError::InvalidPong);
    }
    if !matches!(heads.get(1), Some(Head::Bool(true))) {
        return Err(HandshakeError::Rejected(
            String::from_utf8_lossy(text(2)).into_owned(),
        ));
    }
    if text(3) == creds.hostname.as_bytes() {
        return Err(HandshakeError::SameHostname);
    }
    let expect = sha512_hex(&[
        salt.as_bytes(),
        text(3),
        &helo.nonce,
        creds.shared_key.as_bytes(),
    ]);
    if !ct_eq(expect.as_bytes(), text(4)) {
        return Err(HandshakeError::SharedKeyMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 16] = *b"0123456789abcdef";

    /// `printf 'saltclient.example0123456789abcdefsecret' | sha512sum`
    const PING_DIGEST: &str = "7e9f1a0b5bc39d77b6caf28087890cb511891020d4de2db812882fe41fd66fe6d1e4944a3931ec61d7a3f67dd9a19769ce9fd34a40f83d960461ac59a8b81661";
    /// `printf 'saltserver.example0123456789abcdefsecret' | sha512sum`
    const PONG_DIGEST: &str = "21a3e6f662ab6a4770438fb6fd0697daba3a01cf01dcdd514f9b9ad6de9218f35c8715e8686fc62e238a50f183eee4451da19b3b4dc5d7f04dcd1724d5e785be";
    /// `printf 'authsaltauthsaltalicepw' | sha512sum`
    const PASSWORD_DIGEST: &str = "5f3d9f4dfbcfa745f35d3375ab8ae8b95cc3393ecee33ef4f1f4a14490ddc7f1b87eceb4324005592803695ff98b20123c26c370e0bd1c26bca324301efafe63";

    fn security() -> Security {
        Security {
            self_hostname: "server.example".into(),
            shared_key: "secret".into(),
            user_auth: false,
            allow_anonymous_source: true,
            users: vec![User {
                username: "alice".into(),
                password: "pw".into(),
            }],
            clients: vec![],
        }
    }

    fn ping(fields: [&str; 6]) -> Vec<u8> {
        let mut out = Vec::new();
        write_array_header(&mut out, 6);
        fields
            .iter()
            .for_each(|f| write_str(&mut out, f.as_bytes()));
        out
    }

    fn server(sec: &Security) -> ServerHandshake {
        let auth_salt = if sec.user_auth {
            b"authsaltauthsalt".to_vec()
        } else {
            Vec::new()
        };
        ServerHandshake {
            nonce: NONCE,
            auth_salt,
            keepalive: true,
        }
    }

    fn check(sec: &Security, ping_msg: &[u8], remote: &str, expect: Result<&str, &str>) {
        let hs = server(sec);
        let ip: IpAddr = remote.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let out = hs.check_ping(sec, ping_msg, ip);
        match (&out.result, expect) {
            (Ok(a), Ok(host)) => {
                assert_eq!(a.hostname, host);
                assert_eq!(
                    out.pong,
                    encode_pong(true, "", "server.example", PONG_DIGEST)
                );
            }
            (Err(r), Err(want)) => {
                assert_eq!(r, want);
                assert_eq!(out.pong, encode_pong(false, want, "", ""));
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn ping_check_table() {
        let good = ping(["PING", "client.example", "salt", PING_DIGEST, "", ""]);
        let sec = security();
        check(&sec, &good, "10.0.0.1", Ok("client.example"));
        check(
            &sec,
            &ping(["PING", "client.example", "salt", &"0".repeat(128), "", ""]),
            "10.0.0.1",
            Err("shared_key mismatch"),
        );
        check(
            &sec,
            &ping(["PONG", "client.example", "salt", PING_DIGEST, "", ""]),
            "10.0.0.1",
            Err("invalid ping message"),
        );
        check(
            &sec,
            &[0x93, 0xa1, b'a', 0xa1, b'b', 0xa1, b'c'],
            "10.0.0.1",
            Err("invalid ping message"),
        );
        check(&sec, &[0xc1], "10.0.0.1", Err("invalid ping message"));

        // Anonymous sources, per-client keys.
        let mut strict = security();
        strict.allow_anonymous_source = false;
        check(
            &strict,
            &good,
            "10.0.0.1",
            Err("anonymous source host '10.0.0.1' denied"),
        );
        strict.clients.push(ClientRule {
            network: Network::parse("10.0.0.0/24").unwrap_or(Network::host([0, 0, 0, 0].into())),
            shared_key: None,
            users: vec![],
        });
        check(&strict, &good, "10.0.0.1", Ok("client.example"));
        check(&strict, &good, "::ffff:10.0.0.9", Ok("client.example"));
        check(
            &strict,
            &good,
            "10.0.1.1",
            Err("anonymous source host '10.0.1.1' denied"),
        );
        strict.clients[0].shared_key = Some("other".into());
        check(&strict, &good, "10.0.0.1", Err("shared_key mismatch"));

        // User auth.
        let mut auth = security();
        auth.user_auth = true;
        let with_user = ping([
            "PING",
            "client.example",
            "salt",
            PING_DIGEST,
            "alice",
            PASSWORD_DIGEST,
        ]);
        check(&auth, &with_user, "10.0.0.1", Ok("client.example"));
        check(&auth, &good, "10.0.0.1", Err("username/password mismatch"));
        auth.clients.push(ClientRule {
            network: Network::host([10, 0, 0, 1].into()),
            shared_key: None,
            users: vec!["bob".into()],
        });
        check(
            &auth,
            &with_user,
            "10.0.0.1",
            Err("username/password mismatch"),
        );
    }

    #[test]
    fn client_side_matches_server() {
        let sec = Security {
            user_auth: true,
            ..security()
        };
        let hs = server(&sec);
        let helo = parse_helo(&hs.helo()).expect("valid helo");
        assert_eq!(
            helo,
            Helo {
                nonce: NONCE.to_vec(),
                auth: b"authsaltauthsalt".to_vec(),
                keepalive: true
            }
        );
        let creds = ClientCredentials {
            hostname: "client.example".into(),
            shared_key: "secret".into(),
            username: Some("alice".into()),
            password: Some("pw".into()),
        };
        let p = encode_ping(&helo, &creds, "salt").expect("ping");
        assert_eq!(
            p,
            ping([
                "PING",
                "client.example",
                "salt",
                PING_DIGEST,
                "alice",
                PASSWORD_DIGEST
            ])
        );
        let out = hs.check_ping(&sec, &p, [127, 0, 0, 1].into());
        assert!(out.result.is_ok());
        assert_eq!(check_pong(&out.pong, &helo, &creds, "salt"), Ok(()));
        let same = ClientCredentials {
            hostname: "server.example".into(),
            ..creds.clone()
        };
        assert_eq!(
            check_pong(&out.pong, &helo, &same, "salt"),
            Err(HandshakeError::SameHostname)
        );
        let wrong = ClientCredentials {
            shared_key: "nope".into(),
            ..creds.clone()
        };
        assert_eq!(
            check_pong(&out.pong, &helo, &wrong, "salt"),
            Err(HandshakeError::SharedKeyMismatch)
        );
        let refused = encode_pong(false, "shared_key mismatch", "", "");
        assert_eq!(
            check_pong(&refused, &helo, &creds, "salt"),
            Err(HandshakeError::Rejected("shared_key mismatch".into()))
        );
        let no_creds = ClientCredentials {
            username: None,
            ..creds
        };
        assert_eq!(
            encode_ping(&helo, &no_creds, "salt"),
            Err(HandshakeError::CredentialsRequired)
        );
        assert_eq!(generate_salt().len(), 32);
    }

    #[test]
    fn helo_layout() {
        let hs = ServerHandshake {
            nonce: NONCE,
            auth_salt: vec![],
            keepalive: false,
        };
        let mut want = vec![0x92, 0xa4];
        want.extend_from_slice(b"HELO");
        want.extend_from_slice(&[0x83, 0xa5]);
        want.extend_from_slice(b"nonce");
        want.extend_from_slice(&[0xc4, 16]);
        want.extend_from_slice(&NONCE);
        want.push(0xa4);
        want.extend_from_slice(b"auth");
        want.push(0xa0);
        want.push(0xa9);
        want.extend_from_slice(b"keepalive");
        want.push(0xc2);
        assert_eq!(hs.helo(), want);
        let fresh = ServerHandshake::new(
            &Security {
                user_auth: true,
                ..security()
            },
            true,
        );
        assert_eq!(fresh.auth_salt.len(), 16);
    }

    #[test]
    fn networks() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.5/8", "10.1.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.5", "192.168.1.5", true),
            ("192.168.1.5", "192.168.1.6", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("::1", "::1", true),
            ("fe80::/10", "fe80::1", true),
            ("fe80::/10", "10.0.0.1", false),
        ];
        for (net, ip, want) in cases {
            let n = Network::parse(net);
            let ip: Option<IpAddr> = ip.parse().ok();
            assert_eq!(
                n.zip(ip).map(|(n, ip)| n.contains(ip)),
                Some(want),
                "{net} ∋ {ip:?}"
            );
        }
        assert_eq!(Network::parse("10.0.0.0/33"), None);
        assert_eq!(Network::parse("nope"), None);
    }
}
