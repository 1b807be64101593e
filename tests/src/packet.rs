//! Building frames for fixtures and taking answers apart, with checksums verified from scratch.

pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_EDGE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x53];

/// One's-complement sum of 16-bit big-endian words.
pub fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        acc += (*b as u32) << 8;
    }
    acc
}

pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// IP layer of a frame under construction.
#[derive(Clone, Debug)]
pub enum Ip {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        options: Vec<u8>,
        frag: u16,
        tot_len: Option<u16>,
    },
    /// Extension headers are (next-header code, full bytes including their own first two).
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        ext: Vec<(u8, Vec<u8>)>,
        payload_len: Option<u16>,
    },
}

/// A TCP header under construction (DNS over TCP: the payload gets its two-byte length prefix
/// unless `raw_payload` is set).
#[derive(Clone, Debug)]
pub struct Tcp {
    pub seq: u32,
    pub ack: u32,
    /// FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10.
    pub flags: u8,
    pub window: u16,
    /// Options, padded by the caller to a multiple of four bytes.
    pub options: Vec<u8>,
    /// Send `payload` as the segment's data as it is (no length prefix).
    pub raw_payload: bool,
}

impl Default for Tcp {
    fn default() -> Tcp {
        Tcp {
            seq: 0x1000_0000,
            ack: 0x2000_0000,
            flags: 0x18,
            window: 502,
            options: vec![],
            raw_payload: false,
        }
    }
}

/// NOP, NOP, timestamp option (kind 8, length 10) as Linux lays it out.
pub fn ts_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub vlans: Vec<(u16, u16)>,
    /// When set (and `proto` is 6), the transport is TCP.
    pub tcp: Option<Tcp>,
    pub ip: Ip,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub udp_len: Option<u16>,
    pub zero_udp_checksum: bool,
    pub payload: Vec<u8>,
    pub padding: Vec<u8>,
}

impl Frame {
    pub fn v4(payload: Vec<u8>) -> Frame {
        Frame {
            vlans: vec![],
            ip: Ip::V4 {
                src: [192, 0, 2, 1],
                dst: [192, 0, 2, 53],
                options: vec![],
                frag: 0,
                tot_len: None,
            },
            tcp: None,
            proto: 17,
            sport: 40000,
            dport: 53,
            udp_len: None,
            zero_udp_checksum: false,
            payload,
            padding: vec![],
        }
    }

    pub fn v6(payload: Vec<u8>) -> Frame {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let mut dst = src;
        src[15] = 1;
        dst[15] = 0x53;
        Frame {
            ip: Ip::V6 {
                src,
                dst,
                ext: vec![],
                payload_len: None,
            },
            ..Frame::v4(payload)
        }
    }

    /// The same query over TCP (a data segment of an established connection).
    pub fn over_tcp(mut self, tcp: Tcp) -> Frame {
        self.proto = 6;
        self.tcp = Some(tcp);
        self
    }

    fn tcp_segment(&self, t: &Tcp) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        l4.extend_from_slice(&t.seq.to_be_bytes());
        l4.extend_from_slice(&t.ack.to_be_bytes());
        let doff = 20 + t.options.len();
        assert!(
            doff.is_multiple_of(4) && doff <= 60,
            "TCP options must pad to 4 bytes"
        );
        l4.push(((doff / 4) as u8) << 4);
        l4.push(t.flags);
        l4.extend_from_slice(&t.window.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 0]);
        l4.extend_from_slice(&t.options);
        if !t.raw_payload {
            l4.extend_from_slice(&(self.payload.len() as u16).to_be_bytes());
        }
        l4.extend_from_slice(&self.payload);
        l4
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        if let (6, Some(t)) = (self.proto, &self.tcp) {
            l4 = self.tcp_segment(t);
        } else {
            let ulen = self.udp_len.unwrap_or((8 + self.payload.len()) as u16);
            l4.extend_from_slice(&self.sport.to_be_bytes());
            l4.extend_from_slice(&self.dport.to_be_bytes());
            l4.extend_from_slice(&ulen.to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            l4.extend_from_slice(&self.payload);
        }
        let mut f = Vec::new();
        f.extend_from_slice(&MAC_EDGE);
        f.extend_from_slice(&MAC_CLIENT);
        for (tpid, vid) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        match &self.ip {
            Ip::V4 {
                src,
                dst,
                options,
                frag,
                tot_len,
            } => {
                if self.proto == 17 && !self.zero_udp_checksum {
                    let mut acc = sum16(src, 0);
                    acc = sum16(dst, acc);
                    acc += 17 + l4.len() as u32;
                    let c = !fold(sum16(&l4, acc));
                    let c = if c == 0 { 0xffff } else { c };
                    l4[6..8].copy_from_slice(&c.to_be_bytes());
                }
                if self.proto == 6 && self.tcp.is_some() {
                    let acc = sum16(dst, sum16(src, 0)) + 6 + l4.len() as u32;
                    let c = !fold(sum16(&l4, acc));
                    l4[16..18].copy_from_slice(&c.to_be_bytes());
                }
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let ihl = 20 + options.len();
                let tot = tot_len.unwrap_or((ihl + l4.len()) as u16);
                let mut h = vec![0x40 | (ihl / 4) as u8, 0];
                h.extend_from_slice(&tot.to_be_bytes());
                h.extend_from_slice(&[0x12, 0x34]);
                h.extend_from_slice(&frag.to_be_bytes());
                h.extend_from_slice(&[64, self.proto, 0, 0]);
                h.extend_from_slice(src);
                h.extend_from_slice(dst);
                h.extend_from_slice(options);
                let c = !fold(sum16(&h, 0));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            Ip::V6 {
                src,
                dst,
                ext,
                payload_len,
            } => {
                if self.proto == 17 {
                    let mut acc = sum16(src, 0);
                    acc = sum16(dst, acc);
                    acc += 17 + l4.len() as u32;
                    let c = !fold(sum16(&l4, acc));
                    let c = if c == 0 { 0xffff } else { c };
                    l4[6..8].copy_from_slice(&c.to_be_bytes());
                }
                if self.proto == 6 && self.tcp.is_some() {
                    let acc = sum16(dst, sum16(src, 0)) + 6 + l4.len() as u32;
                    let c = !fold(sum16(&l4, acc));
                    l4[16..18].copy_from_slice(&c.to_be_bytes());
                }
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let ext_len: usize = ext.iter().map(|(_, b)| b.len()).sum();
                let plen = payload_len.unwrap_or((ext_len + l4.len()) as u16);
                let first = ext.first().map(|(c, _)| *c).unwrap_or(self.proto);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&plen.to_be_bytes());
                f.extend_from_slice(&[first, 64]);
                f.extend_from_slice(src);
                f.extend_from_slice(dst);
                for (i, (_, b)) in ext.iter().enumerate() {
                    let mut b = b.clone();
                    b[0] = ext.get(i + 1).map(|(c, _)| *c).unwrap_or(self.proto);
                    f.extend_from_slice(&b);
                }
            }
        }
        f.extend_from_slice(&l4);
        f.extend_from_slice(&self.padding);
        f
    }
}

/// Longest first message (its length prefix included) the program cuts a segment to; a
/// segment whose first message is longer is dropped (README, "DNS over TCP").
pub const CUT_MAX: usize = 508;

/// What a passing TCP segment with more data behind its first DNS message becomes, from RFC
/// 791/793/8200 alone: the frame ends after that message (`keep_end`), FIN is cleared, and the
/// IP length, the IPv4 header checksum and the TCP checksum are written anew. `l3` and `l4`
/// are the offsets of the IP and TCP headers.
pub fn cut_segment(f: &[u8], l3: usize, l4: usize, keep_end: usize) -> Vec<u8> {
    let mut out = f[..keep_end].to_vec();
    let pseudo = if out[l3] >> 4 == 4 {
        let ihl = ((out[l3] & 0xf) as usize) * 4;
        let tot = ((keep_end - l3) as u16).to_be_bytes();
        out[l3 + 2..l3 + 4].copy_from_slice(&tot);
        out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = !fold(sum16(&out[l3..l3 + ihl], 0));
        out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        sum16(&out[l3 + 12..l3 + 20], 0)
    } else {
        let plen = ((keep_end - l3 - 40) as u16).to_be_bytes();
        out[l3 + 4..l3 + 6].copy_from_slice(&plen);
        sum16(&out[l3 + 8..l3 + 40], 0)
    };
    out[l4 + 13] &= !0x01;
    out[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
    let len = keep_end - l4;
    let c = !fold(sum16(&out[l4..], pseudo + 6 + len as u32));
    out[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    out
}

/// An answer frame taken apart, checksums verified.
#[derive(Debug)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlans: Vec<(u16, u16)>,
    pub src_ip: Vec<u8>,
    pub dst_ip: Vec<u8>,
    pub ttl: u8,
    pub sport: u16,
    pub dport: u16,
    /// The DNS message (over TCP: after its length prefix, which must match).
    pub dns: Vec<u8>,
    /// The TCP header fields, for a TCP segment.
    pub tcp: Option<TcpParsed>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpParsed {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub urgent: u16,
    pub options: Vec<u8>,
    /// Bytes of data in the segment (length prefix included).
    pub data_len: usize,
}

/// Parses an Ethernet/VLAN/IP/UDP or TCP frame and verifies the IPv4 header and the UDP or TCP
/// checksum.
pub fn parse(f: &[u8]) -> Result<Parsed, String> {
    let mut off = 14;
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    let mut vlans = vec![];
    while et == 0x8100 || et == 0x88a8 {
        vlans.push((et, u16::from_be_bytes([f[off], f[off + 1]])));
        et = u16::from_be_bytes([f[off + 2], f[off + 3]]);
        off += 4;
    }
    let (src_ip, dst_ip, ttl, l4, pseudo, proto) = match et {
        0x0800 => {
            let ihl = ((f[off] & 0xf) as usize) * 4;
            let h = &f[off..off + ihl];
            if fold(sum16(h, 0)) != 0xffff {
                return Err("bad IPv4 header checksum".into());
            }
            let tot = u16::from_be_bytes([h[2], h[3]]) as usize;
            if off + tot != f.len() {
                return Err(format!(
                    "IPv4 total length {tot} but {} bytes follow",
                    f.len() - off
                ));
            }
            let acc = sum16(&h[12..20], 0);
            (
                h[12..16].to_vec(),
                h[16..20].to_vec(),
                h[8],
                off + ihl,
                acc,
                h[9],
            )
        }
        0x86dd => {
            let h = &f[off..off + 40];
            let plen = u16::from_be_bytes([h[4], h[5]]) as usize;
            if off + 40 + plen != f.len() {
                return Err(format!(
                    "IPv6 payload length {plen} but {} bytes follow",
                    f.len() - off - 40
                ));
            }
            let mut next = h[6];
            let mut l4 = off + 40;
            while next != 17 && next != 6 {
                next = f[l4];
                l4 += (f[l4 + 1] as usize + 1) * 8;
            }
            (
                h[8..24].to_vec(),
                h[24..40].to_vec(),
                h[7],
                l4,
                sum16(&h[8..40], 0),
                next,
            )
        }
        other => return Err(format!("ethertype {other:#x}")),
    };
    let u = &f[l4..];
    let (dns, tcp) = if proto == 6 {
        if fold(sum16(u, pseudo + 6 + u.len() as u32)) != 0xffff {
            return Err("bad TCP checksum".into());
        }
        let doff = ((u[12] >> 4) as usize) * 4;
        let data = &u[doff..];
        if data.len() < 2 {
            return Err("TCP segment without a length prefix".into());
        }
        let prefix = u16::from_be_bytes([data[0], data[1]]) as usize;
        if prefix != data.len() - 2 {
            return Err(format!(
                "TCP length prefix {prefix} but {} bytes follow",
                data.len() - 2
            ));
        }
        let t = TcpParsed {
            seq: u32::from_be_bytes([u[4], u[5], u[6], u[7]]),
            ack: u32::from_be_bytes([u[8], u[9], u[10], u[11]]),
            flags: u[13],
            window: u16::from_be_bytes([u[14], u[15]]),
            urgent: u16::from_be_bytes([u[18], u[19]]),
            options: u[20..doff].to_vec(),
            data_len: data.len(),
        };
        (data[2..].to_vec(), Some(t))
    } else {
        let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
        // Over IPv6, 0 means the rest of the packet (RFC 2675; Linux delivers it).
        let v6_rest = ulen == 0 && et == 0x86dd && u.len() >= 8;
        if ulen != u.len() && !v6_rest {
            return Err(format!("UDP length {ulen} but {} bytes", u.len()));
        }
        if fold(sum16(u, pseudo + 17 + u.len() as u32)) != 0xffff {
            return Err("bad UDP checksum".into());
        }
        (u[8..].to_vec(), None)
    };
    let mut dst_mac = [0u8; 6];
    let mut src_mac = [0u8; 6];
    dst_mac.copy_from_slice(&f[0..6]);
    src_mac.copy_from_slice(&f[6..12]);
    Ok(Parsed {
        dst_mac,
        src_mac,
        vlans,
        src_ip,
        dst_ip,
        ttl,
        sport: u16::from_be_bytes([u[0], u[1]]),
        dport: u16::from_be_bytes([u[2], u[3]]),
        dns,
        tcp,
    })
}

/// The TCP header of an answer, checked against the query's from RFC 793/7323 alone: the
/// answer continues the server's side of the stream where the client expects it, acknowledges
/// every byte (and a FIN) of the query, closes with FIN, and answers a timestamp option as the
/// server would; every other option is blanked with NOPs.
///
/// `first_only`: the query's segment holds a second query for the same name behind the first
/// (glibc's A and AAAA), and this many bytes are the first (its length prefix included): then
/// the answer acknowledges those bytes only and keeps the connection open (PSH|ACK, no FIN),
/// so the client sends the second query again.
pub fn check_tcp_answer(
    q: &TcpParsed,
    a: &TcpParsed,
    first_only: Option<usize>,
) -> Result<(), String> {
    if a.seq != q.ack {
        return Err(format!(
            "TCP seq {:#x}, expected the query's ack {:#x}",
            a.seq, q.ack
        ));
    }
    let fin = (q.flags & 1) as u32;
    let (want_ack, want_flags) = match first_only {
        Some(n) => (q.seq.wrapping_add(n as u32), 0x18),
        None => (
            q.seq.wrapping_add(q.data_len as u32).wrapping_add(fin),
            0x19,
        ),
    };
    if a.ack != want_ack {
        return Err(format!("TCP ack {:#x}, expected {want_ack:#x}", a.ack));
    }
    if a.flags != want_flags {
        return Err(format!(
            "TCP flags {:#04x}, expected {want_flags:#04x}",
            a.flags
        ));
    }
    if a.urgent != 0 {
        return Err("urgent pointer set".into());
    }
    if a.options.len() != q.options.len() {
        return Err("TCP header length changed".into());
    }
    // Walk the query's options independently and build what the answer's must be: one
    // timestamp option answered in place (the last well-formed one, the one Linux's parser
    // keeps when a segment carries two), every other option byte a NOP.
    let mut want = vec![1u8; q.options.len()];
    let mut ts = None;
    let mut i = 0;
    while i < q.options.len() {
        match q.options[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = q.options.get(i + 1).copied().unwrap_or(0) as usize;
                if len < 2 || i + len > q.options.len() {
                    break;
                }
                if kind == 8 && len == 10 {
                    ts = Some(i);
                }
                i += len;
            }
        }
    }
    if let Some(i) = ts {
        want[i] = 8;
        want[i + 1] = 10;
        want[i + 2..i + 6].copy_from_slice(&q.options[i + 6..i + 10]);
        want[i + 6..i + 10].copy_from_slice(&q.options[i + 2..i + 6]);
    }
    if a.options != want {
        return Err(format!(
            "TCP options {:02x?}, expected {want:02x?}",
            a.options
        ));
    }
    Ok(())
}
