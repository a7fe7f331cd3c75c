//! The one SIP message generator of the tests, the benchmarks and the demo.
//!
//! [`SipMessage`] writes requests and responses with CRLF line ends and a correct
//! Content-Length. Every part a test or a traffic generator varies is a builder call: method,
//! URIs, Via, From/To, Call-ID, CSeq, Contact, Expires, the User-Agent (value, spelling of the
//! header, folding onto a continuation line, its byte offset through padding headers), extra
//! headers (formatted or verbatim), compact header names and a body. Tokens (branch, tags,
//! Call-ID) are derived from the inputs, so messages are reproducible; [`SipMessage::seq`] makes
//! them differ from one message of a stream to the next.

/// Address of the simulated SIP client used in Via and Contact unless [`SipMessage::via`] says
/// otherwise.
pub const SIP_CLIENT: &str = "198.51.100.10";
/// Default User-Agent of requests.
pub const DEFAULT_USER_AGENT: &str = "Linphone/5.2.0 (belle-sip/5.2.0)";
/// Filler header line lengths (incl. CRLF) used by [`SipMessage::user_agent_at`].
pub const FILL_MIN: usize = 32;
pub const FILL_MAX: usize = 128;

#[derive(Clone, Debug)]
enum Kind {
    Request { method: String, user: String, domain: String },
    Response { code: u16, reason: String, cseq_method: String },
}

#[derive(Clone, Debug)]
enum Setting {
    /// Requests: the default value; responses: no header.
    Default,
    Custom(String),
    Off,
}

/// SIP request/response generator.
#[derive(Clone, Debug)]
pub struct SipMessage {
    kind: Kind,
    ua: Setting,
    ua_name: String,
    ua_sep: String,
    ua_offset: Option<usize>,
    /// Extra header lines, written verbatim, in call order.
    extra: Vec<String>,
    compact: bool,
    from_display: Option<String>,
    uri: Option<String>,
    from_uri: Option<String>,
    to_uri: Option<String>,
    via: Option<String>,
    contact: Setting,
    call_id: Option<String>,
    cseq: u32,
    expires: Option<u32>,
    seq: u64,
    body: String,
}

impl SipMessage {
    fn with_kind(kind: Kind) -> Self {
        Self {
            kind,
            ua: Setting::Default,
            ua_name: "User-Agent".into(),
            ua_sep: ": ".into(),
            ua_offset: None,
            extra: Vec::new(),
            compact: false,
            from_display: None,
            uri: None,
            from_uri: None,
            to_uri: None,
            via: None,
            contact: Setting::Default,
            call_id: None,
            cseq: 1,
            expires: None,
            seq: 0,
            body: String::new(),
        }
    }

    /// A request; the URI is `sip:{domain}` for REGISTER, `sip:{user}@{domain}` otherwise, and
    /// From/To are `sip:{user}@{domain}`.
    pub fn request(method: &str, user: &str, domain: &str) -> Self {
        Self::with_kind(Kind::Request { method: method.into(), user: user.into(), domain: domain.into() })
    }

    /// A response like "SIP/2.0 200 OK" for a given CSeq method. Responses carry no User-Agent
    /// unless [`Self::user_agent`] is called.
    pub fn response(code: u16, reason: &str, cseq_method: &str) -> Self {
        Self::with_kind(Kind::Response { code, reason: reason.into(), cseq_method: cseq_method.into() })
    }

    /// The User-Agent value.
    pub fn user_agent(mut self, ua: &str) -> Self {
        self.ua = Setting::Custom(ua.into());
        self
    }

    /// No User-Agent header.
    pub fn no_user_agent(mut self) -> Self {
        self.ua = Setting::Off;
        self
    }

    /// How the User-Agent header is spelled: its name (e.g. `user-agent`, `USER-AGENT`) and what
    /// stands between the name and the value (default `": "`; e.g. `" \t:   "`, `":"`).
    pub fn user_agent_spelling(mut self, name: &str, separator: &str) -> Self {
        self.ua_name = name.into();
        self.ua_sep = separator.into();
        self
    }

    /// Fold the User-Agent value onto a continuation line: `User-Agent  :` CRLF TAB value.
    pub fn fold_user_agent(mut self) -> Self {
        self.ua_sep = "  :\r\n\t".into();
        self
    }

    /// Place the User-Agent line so it starts `offset` bytes into the message, by inserting
    /// `X-Padding-N: aaa...` headers before it (and, for small offsets, moving it earlier among
    /// the standard headers). Exact whenever possible, otherwise within [`FILL_MIN`] bytes;
    /// never before the end of the start line.
    pub fn user_agent_at(mut self, offset: usize) -> Self {
        self.ua_offset = Some(offset);
        self
    }

    /// An extra header `{name}: {value}`, after the User-Agent and before Content-Type and
    /// Content-Length, in call order.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push(format!("{name}: {value}"));
        self
    }

    /// An extra header line written verbatim (any spelling, e.g. `User-Agent:x` or
    /// `f: sipvicious <sip:1@x>`), placed like [`Self::header`].
    pub fn raw_header(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    /// Compact header names (v, f, t, i, m, l, and c for Content-Type).
    pub fn compact(mut self) -> Self {
        self.compact = true;
        self
    }

    /// A display name in From: `"display" <uri>;tag=...`.
    pub fn from_display(mut self, display: &str) -> Self {
        self.from_display = Some(display.into());
        self
    }

    /// The request-URI.
    pub fn uri(mut self, uri: &str) -> Self {
        self.uri = Some(uri.into());
        self
    }

    /// The URI of From (written as `<uri>`).
    pub fn from(mut self, uri: &str) -> Self {
        self.from_uri = Some(uri.into());
        self
    }

    /// The URI of To (written as `<uri>`).
    pub fn to(mut self, uri: &str) -> Self {
        self.to_uri = Some(uri.into());
        self
    }

    /// The Via sent-by (`host:port`, `[v6]:port`), also the host of the default Contact.
    pub fn via(mut self, sent_by: &str) -> Self {
        self.via = Some(sent_by.into());
        self
    }

    /// The Contact value (requests), written as is.
    pub fn contact(mut self, value: &str) -> Self {
        self.contact = Setting::Custom(value.into());
        self
    }

    /// The Call-ID (default: derived from the inputs).
    pub fn call_id(mut self, id: &str) -> Self {
        self.call_id = Some(id.into());
        self
    }

    /// The CSeq number (default 1).
    pub fn cseq(mut self, n: u32) -> Self {
        self.cseq = n;
        self
    }

    /// An Expires header (REGISTER has `Expires: 3600` unless this says otherwise).
    pub fn expires(mut self, secs: u32) -> Self {
        self.expires = Some(secs);
        self
    }

    /// Number of this message in a stream: mixed into the branch, tags and Call-ID.
    pub fn seq(mut self, n: u64) -> Self {
        self.seq = n;
        self
    }

    /// A body (e.g. SDP); a non-empty body adds `Content-Type: application/sdp`.
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }

    fn name(&self, full: &'static str, short: &'static str) -> &'static str {
        if self.compact {
            short
        } else {
            full
        }
    }

    /// The serialized message.
    pub fn build(&self) -> Vec<u8> {
        let mut seed = match &self.kind {
            Kind::Request { method, user, domain } => format!("{method}|{user}|{domain}"),
            Kind::Response { code, reason, cseq_method } => format!("{code}|{reason}|{cseq_method}"),
        };
        if self.seq != 0 {
            seed += &format!("|{}", self.seq);
        }
        let h = fnv1a(seed.as_bytes());
        let branch = format!("z9hG4bK-{}", h % 1_000_000_000);
        let tag = format!("{:08x}", (h >> 32) as u32);
        let call_id = self.call_id.clone().unwrap_or_else(|| format!("{h:016x}@{SIP_CLIENT}"));
        let display = self.from_display.as_ref().map(|d| format!("\"{d}\" ")).unwrap_or_default();
        let sent_by = self.via.clone().unwrap_or_else(|| format!("{SIP_CLIENT}:5060"));

        let (via, from, to, cid) =
            (self.name("Via", "v"), self.name("From", "f"), self.name("To", "t"), self.name("Call-ID", "i"));
        let mut lines: Vec<String> = Vec::new();
        let ua = match (&self.ua, &self.kind) {
            (Setting::Custom(s), _) => Some(s.clone()),
            (Setting::Default, Kind::Request { .. }) => Some(DEFAULT_USER_AGENT.to_string()),
            _ => None,
        };
        match &self.kind {
            Kind::Request { method, user, domain } => {
                let register = method.eq_ignore_ascii_case("REGISTER");
                let aor = format!("sip:{user}@{domain}");
                let uri =
                    self.uri.clone().unwrap_or_else(|| if register { format!("sip:{domain}") } else { aor.clone() });
                let from_uri = self.from_uri.as_ref().unwrap_or(&aor);
                let to_uri = self.to_uri.as_ref().unwrap_or(&aor);
                lines.push(format!("{method} {uri} SIP/2.0"));
                lines.push(format!("{via}: SIP/2.0/UDP {sent_by};branch={branch};rport"));
                lines.push("Max-Forwards: 70".to_string());
                lines.push(format!("{from}: {display}<{from_uri}>;tag={tag}"));
                lines.push(format!("{to}: <{to_uri}>"));
                lines.push(format!("{cid}: {call_id}"));
                lines.push(format!("CSeq: {} {method}", self.cseq));
                let contact = self.name("Contact", "m");
                match &self.contact {
                    Setting::Default => lines.push(format!("{contact}: <sip:{user}@{sent_by}>")),
                    Setting::Custom(c) => lines.push(format!("{contact}: {c}")),
                    Setting::Off => {}
                }
                if let Some(e) = self.expires.or(register.then_some(3600)) {
                    lines.push(format!("Expires: {e}"));
                }
            }
            Kind::Response { code, reason, cseq_method } => {
                let aor = "sip:alice@example.com";
                let from_uri = self.from_uri.as_deref().unwrap_or(aor);
                let to_uri = self.to_uri.as_deref().unwrap_or(aor);
                let host = sent_by.rsplit_once(':').map_or(sent_by.as_str(), |(h, _)| h);
                lines.push(format!("SIP/2.0 {code} {reason}"));
                lines.push(format!("{via}: SIP/2.0/UDP {sent_by};branch={branch};rport=5060;received={host}"));
                lines.push(format!("{from}: {display}<{from_uri}>;tag={tag}"));
                lines.push(format!("{to}: <{to_uri}>;tag={:08x}", h as u32));
                lines.push(format!("{cid}: {call_id}"));
                lines.push(format!("CSeq: {} {cseq_method}", self.cseq));
            }
        }

        if let Some(ua) = ua {
            let ua_line = format!("{}{}{ua}", self.ua_name, self.ua_sep);
            match self.ua_offset {
                None => lines.push(ua_line),
                Some(offset) => {
                    let (idx, fill) = ua_placement(&lines, offset);
                    let mut insert = filler_headers(fill);
                    insert.push(ua_line);
                    lines.splice(idx..idx, insert);
                }
            }
        }
        lines.extend(self.extra.iter().cloned());
        if !self.body.is_empty() {
            lines.push(format!("{}: application/sdp", self.name("Content-Type", "c")));
        }
        lines.push(format!("{}: {}", self.name("Content-Length", "l"), self.body.len()));

        let mut out = String::new();
        for l in &lines {
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// Where to insert the User-Agent (index into `lines`) and how many filler bytes to put before
/// it so that it starts at `offset`.
fn ua_placement(lines: &[String], offset: usize) -> (usize, usize) {
    let prefix = |i: usize| lines[..i].iter().map(|l| l.len() + 2).sum::<usize>();
    let mut idx = lines.len();
    while idx > 1 && prefix(idx) > offset {
        idx -= 1;
    }
    // A gap too small for a filler line: move one header earlier to widen it.
    while idx > 1 && offset > prefix(idx) && offset - prefix(idx) < FILL_MIN {
        idx -= 1;
    }
    let gap = offset.saturating_sub(prefix(idx));
    (idx, if gap >= FILL_MIN { gap } else { 0 })
}

/// Filler header lines whose total length including CRLFs is exactly `total` (0 or >= FILL_MIN).
fn filler_headers(total: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rem = total;
    let mut n = 1;
    while rem > 0 {
        let mut take = rem.min(FILL_MAX);
        if rem > take && rem - take < FILL_MIN {
            take = rem - FILL_MIN;
        }
        let name = format!("X-Padding-{n}: ");
        out.push(format!("{name}{}", "a".repeat(take - name.len() - 2)));
        rem -= take;
        n += 1;
    }
    out
}

/// 64-bit FNV-1a, for deterministic tags, branches and Call-IDs.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &SipMessage) -> String {
        String::from_utf8(m.build()).unwrap()
    }

    /// Header lines and body; checks the CRLF discipline (a folded line is a CRLF + TAB/SP).
    fn split(msg: &str) -> (Vec<&str>, &str) {
        let end = msg.find("\r\n\r\n").expect("header terminator");
        let head = &msg[..end];
        assert!(!head.replace("\r\n", "").contains('\n'), "bare LF");
        assert!(!head.replace("\r\n", "").contains('\r'), "bare CR");
        (head.split("\r\n").collect(), &msg[end + 4..])
    }

    fn header_value<'a>(lines: &[&'a str], names: &[&str]) -> Option<&'a str> {
        lines.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            names.iter().any(|x| n.trim().eq_ignore_ascii_case(x)).then(|| v.trim())
        })
    }

    fn content_length_ok(msg: &str) {
        let (lines, body) = split(msg);
        let cl: usize = header_value(&lines, &["Content-Length", "l"]).expect("Content-Length").parse().unwrap();
        assert_eq!(cl, body.len());
    }

    #[test]
    fn register_layout() {
        let m = text(&SipMessage::request("REGISTER", "1001", "pbx.example.com"));
        let (lines, body) = split(&m);
        assert_eq!(lines[0], "REGISTER sip:pbx.example.com SIP/2.0");
        assert!(lines[1].starts_with("Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK-"));
        assert!(lines[1].ends_with(";rport"));
        assert_eq!(lines[2], "Max-Forwards: 70");
        assert!(lines[3].starts_with("From: <sip:1001@pbx.example.com>;tag="));
        assert_eq!(lines[4], "To: <sip:1001@pbx.example.com>");
        assert!(lines[5].starts_with("Call-ID: "));
        assert_eq!(lines[6], "CSeq: 1 REGISTER");
        assert_eq!(lines[7], "Contact: <sip:1001@198.51.100.10:5060>");
        assert_eq!(lines[8], "Expires: 3600");
        assert_eq!(lines[9], format!("User-Agent: {DEFAULT_USER_AGENT}"));
        assert_eq!(lines[10], "Content-Length: 0");
        assert!(body.is_empty());
        assert_eq!(m, text(&SipMessage::request("REGISTER", "1001", "pbx.example.com")), "deterministic");
    }

    #[test]
    fn invite_with_body_and_extras() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let m = text(
            &SipMessage::request("INVITE", "bob", "example.com")
                .user_agent("friendly-scanner")
                .from_display("Alice Ü")
                .header("X-Test", "1")
                .raw_header("User-Agent  : second")
                .body(sdp),
        );
        let (lines, body) = split(&m);
        assert_eq!(lines[0], "INVITE sip:bob@example.com SIP/2.0");
        assert!(lines.iter().all(|l| !l.starts_with("Expires")));
        assert!(lines.iter().any(|l| l.starts_with("From: \"Alice Ü\" <sip:bob@example.com>;tag=")));
        let ua = lines.iter().position(|l| *l == "User-Agent: friendly-scanner").unwrap();
        assert!(lines[ua - 1].starts_with("Contact:"));
        assert_eq!(lines[ua + 1], "X-Test: 1");
        assert_eq!(lines[ua + 2], "User-Agent  : second");
        assert_eq!(header_value(&lines, &["Content-Type"]), Some("application/sdp"));
        assert_eq!(body, sdp);
        content_length_ok(&m);
        // Content-Length counts bytes, not chars.
        let m = text(&SipMessage::request("MESSAGE", "a", "b").body("héllo"));
        content_length_ok(&m);
        assert!(m.contains("Content-Length: 6\r\n"));
    }

    #[test]
    fn stream_fields() {
        let m = SipMessage::request("REGISTER", "1001", "198.51.100.2")
            .via("[2001:db8::10]:5070")
            .call_id("abc@x")
            .cseq(7)
            .expires(60)
            .contact("<sip:1001@[2001:db8::10]:5070>;expires=60")
            .header("Allow", "INVITE, ACK");
        let t = text(&m);
        let (lines, _) = split(&t);
        assert!(lines[1].starts_with("Via: SIP/2.0/UDP [2001:db8::10]:5070;branch="));
        assert!(lines.contains(&"Call-ID: abc@x"));
        assert!(lines.contains(&"CSeq: 7 REGISTER"));
        assert!(lines.contains(&"Expires: 60"));
        assert!(lines.contains(&"Contact: <sip:1001@[2001:db8::10]:5070>;expires=60"));
        assert!(lines.contains(&"Allow: INVITE, ACK"));
        let o = text(
            &SipMessage::request("OPTIONS", "100", "x").uri("sip:0044@x").from("sip:a@y").to("sip:x").no_user_agent(),
        );
        let (lines, _) = split(&o);
        assert_eq!(lines[0], "OPTIONS sip:0044@x SIP/2.0");
        assert!(lines[3].starts_with("From: <sip:a@y>;tag="));
        assert_eq!(lines[4], "To: <sip:x>");
        // seq varies the tokens (branch, tags, Call-ID), nothing else.
        let a = text(&SipMessage::request("OPTIONS", "1", "x").seq(1));
        let b = text(&SipMessage::request("OPTIONS", "1", "x").seq(2));
        assert_ne!(a, b);
        let (la, lb) = (split(&a).0, split(&b).0);
        for (x, y) in la.iter().zip(&lb) {
            assert!(x == y || ["Via:", "From:", "Call-ID:"].iter().any(|h| x.starts_with(h)), "{x} / {y}");
        }
    }

    #[test]
    fn user_agent_spellings() {
        let m = text(&SipMessage::request("OPTIONS", "u", "d").no_user_agent());
        assert!(!m.contains("User-Agent"));
        content_length_ok(&m);
        let m = text(&SipMessage::request("OPTIONS", "u", "d").no_user_agent().user_agent_at(500));
        assert!(!m.contains("User-Agent") && !m.contains("X-Padding"));
        let m = text(&SipMessage::request("REGISTER", "u", "d").user_agent("friendly-scanner").fold_user_agent());
        assert!(m.contains("\r\nUser-Agent  :\r\n\tfriendly-scanner\r\n"), "{m}");
        split(&m);
        let m = text(
            &SipMessage::request("OPTIONS", "u", "d")
                .user_agent("SIPVicious")
                .user_agent_spelling("user-agent", " \t:   "),
        );
        assert!(m.contains("\r\nuser-agent \t:   SIPVicious\r\n"), "{m}");
    }

    #[test]
    fn compact_names() {
        let m = text(&SipMessage::request("INVITE", "u", "example.org").compact().body("v=0\r\n"));
        let (lines, _) = split(&m);
        for short in ["v: ", "f: ", "t: ", "i: ", "m: ", "l: ", "c: "] {
            assert!(lines.iter().any(|l| l.starts_with(short)), "missing {short}");
        }
        for long in ["Via:", "From:", "To:", "Call-ID:", "Contact:", "Content-Length:", "Content-Type:"] {
            assert!(!lines.iter().any(|l| l.starts_with(long)), "unexpected {long}");
        }
        assert!(lines.iter().any(|l| l.starts_with("CSeq: 1 INVITE")));
        assert!(lines.iter().any(|l| l.starts_with("User-Agent: ")));
        content_length_ok(&m);
    }

    #[test]
    fn response() {
        let m = text(&SipMessage::response(200, "OK", "REGISTER"));
        let (lines, body) = split(&m);
        assert_eq!(lines[0], "SIP/2.0 200 OK");
        assert!(lines[1].starts_with("Via: SIP/2.0/UDP ") && lines[1].ends_with("received=198.51.100.10"));
        assert!(lines[2].starts_with("From: "));
        assert!(lines[3].starts_with("To: ") && lines[3].contains(";tag="));
        assert!(lines[4].starts_with("Call-ID: "));
        assert_eq!(lines[5], "CSeq: 1 REGISTER");
        assert_eq!(lines[6], "Content-Length: 0");
        assert_eq!(lines.len(), 7);
        assert!(body.is_empty());
        let m = text(&SipMessage::response(486, "Busy Here", "INVITE").user_agent("Asterisk PBX"));
        assert!(m.contains("\r\nUser-Agent: Asterisk PBX\r\n"));
        content_length_ok(&m);
    }

    #[test]
    fn user_agent_at_offsets() {
        let base = || SipMessage::request("REGISTER", "1001", "sip.example.net").user_agent("sipvicious");
        let natural = text(&base()).find("User-Agent:").unwrap();
        for offset in [0usize, 10, 40, 60, 100, 150, natural, natural + 1, natural + 20, 300, 512, 700, 1400, 4000] {
            for compact in [false, true] {
                let mut m = base().user_agent_at(offset);
                if compact {
                    m = m.compact();
                }
                let s = text(&m);
                let at = s.find("User-Agent: sipvicious").unwrap();
                assert!(s[..at].ends_with("\r\n"), "UA starts a line");
                let first_line_end = s.find("\r\n").unwrap() + 2;
                let want = offset.max(first_line_end);
                assert!(at.abs_diff(want) <= FILL_MIN, "offset {offset}: UA at {at} (compact={compact})");
                if offset >= 100 {
                    assert_eq!(at, offset, "exact placement");
                }
                content_length_ok(&s);
                let (lines, _) = split(&s);
                assert!(lines[0].starts_with("REGISTER "));
                assert!(header_value(&lines, &["Via", "v"]).is_some());
                assert!(header_value(&lines, &["Call-ID", "i"]).is_some());
                assert!(header_value(&lines, &["CSeq"]).is_some());
                assert!(lines.iter().all(|l| l.len() <= FILL_MAX.max(200)));
            }
        }
    }
}
