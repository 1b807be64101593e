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

#[derive(Clone, Debug)]
pub struct Frame {
    pub vlans: Vec<(u16, u16)>,
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

    pub fn bytes(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        let ulen = self.udp_len.unwrap_or((8 + self.payload.len()) as u16);
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        l4.extend_from_slice(&ulen.to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(&self.payload);
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
    pub dns: Vec<u8>,
}

/// Parses an Ethernet/VLAN/IP/UDP frame and verifies the IPv4 header and UDP checksums.
pub fn parse(f: &[u8]) -> Result<Parsed, String> {
    let mut off = 14;
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    let mut vlans = vec![];
    while et == 0x8100 || et == 0x88a8 {
        vlans.push((et, u16::from_be_bytes([f[off], f[off + 1]])));
        et = u16::from_be_bytes([f[off + 2], f[off + 3]]);
        off += 4;
    }
    let (src_ip, dst_ip, ttl, l4, pseudo) = match et {
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
            (h[12..16].to_vec(), h[16..20].to_vec(), h[8], off + ihl, acc)
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
            while next != 17 {
                next = f[l4];
                l4 += (f[l4 + 1] as usize + 1) * 8;
            }
            (
                h[8..24].to_vec(),
                h[24..40].to_vec(),
                h[7],
                l4,
                sum16(&h[8..40], 0),
            )
        }
        other => return Err(format!("ethertype {other:#x}")),
    };
    let u = &f[l4..];
    let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
    if ulen != u.len() {
        return Err(format!("UDP length {ulen} but {} bytes", u.len()));
    }
    if fold(sum16(u, pseudo + 17 + ulen as u32)) != 0xffff {
        return Err("bad UDP checksum".into());
    }
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
        dns: u[8..].to_vec(),
    })
}
