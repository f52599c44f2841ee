//! Ethernet frames for the benchmarks, with checksums computed from scratch (RFC 1071).
//! A trimmed copy of the packet fixtures' builder (tests/tests/fixtures/packet.rs),
//! which is private to that test binary.

use std::net::{IpAddr, SocketAddr};

pub type Mac = [u8; 6];

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

fn rfc1071(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let hi = c[0];
        let lo = c.get(1).copied().unwrap_or(0);
        sum += u32::from(u16::from_be_bytes([hi, lo]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A frame description; [`Frame::bytes`] renders it with correct checksums.
#[derive(Clone, Debug)]
pub struct Frame {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: u8,
    pub tcp_flags: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8) -> Frame {
        Frame {
            dst_mac: [0; 6],
            src_mac: [0; 6],
            src,
            dst,
            proto: TCP,
            tcp_flags: flags,
            payload: Vec::new(),
        }
    }

    pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Frame {
        Frame {
            proto: UDP,
            payload: payload.to_vec(),
            ..Frame::tcp(src, dst, 0)
        }
    }

    pub fn macs(mut self, dst: Mac, src: Mac) -> Frame {
        self.dst_mac = dst;
        self.src_mac = src;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let l4 = match self.proto {
            TCP => self.tcp_segment(),
            _ => self.udp_datagram(),
        };
        let ip = ip_packet(self.src.ip(), self.dst.ip(), self.proto, &l4);
        let mut f = Vec::with_capacity(14 + ip.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    fn checksum(&self, l4: &[u8]) -> u16 {
        let mut sum_in = pseudo_header(self.src.ip(), self.dst.ip(), self.proto, l4.len());
        sum_in.extend_from_slice(l4);
        rfc1071(&sum_in)
    }

    fn tcp_segment(&self) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        t[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        if self.tcp_flags & ACK != 0 {
            t[8..12].copy_from_slice(&2000u32.to_be_bytes());
        }
        t[12] = 5 << 4;
        t[13] = self.tcp_flags;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        t.extend_from_slice(&self.payload);
        let c = self.checksum(&t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    fn udp_datagram(&self) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        u[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        u[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&self.payload);
        let c = match self.checksum(&u) {
            0 => 0xffff,
            c => c,
        };
        u[6..8].copy_from_slice(&c.to_be_bytes());
        u
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = octets(src);
    p.extend(octets(dst));
    if src.is_ipv4() {
        p.extend([0, proto]);
        p.extend((len as u16).to_be_bytes());
    } else {
        p.extend((len as u32).to_be_bytes());
        p.extend([0, 0, 0, proto]);
    }
    p
}

fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = if src.is_ipv4() {
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        if proto == TCP {
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        }
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&octets(src));
        ip[16..20].copy_from_slice(&octets(dst));
        let c = rfc1071(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip
    } else {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        ip[6] = proto;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&octets(src));
        ip[24..40].copy_from_slice(&octets(dst));
        ip
    };
    ip.extend_from_slice(payload);
    ip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let f = Frame::udp(
            "198.51.100.2:1234"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            "192.0.2.10:9000".parse().unwrap_or_else(|e| panic!("{e}")),
            &[0; 18],
        )
        .bytes();
        assert_eq!(f.len(), 60, "a 64-byte frame on the wire, less the FCS");
        assert_eq!(rfc1071(&f[14..34]), 0, "IPv4 header checksum");
        let mut sum_in = pseudo_header(
            "198.51.100.2".parse().unwrap_or_else(|e| panic!("{e}")),
            "192.0.2.10".parse().unwrap_or_else(|e| panic!("{e}")),
            UDP,
            26,
        );
        sum_in.extend_from_slice(&f[34..]);
        assert_eq!(rfc1071(&sum_in), 0, "UDP checksum");
    }
}
