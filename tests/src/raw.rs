//! Sending hand-built frames from inside a network namespace with an AF_PACKET socket and
//! catching the answer: for what kdig cannot send (VLAN tags: this kernel has no 802.1Q
//! devices, but the XDP program must still parse tagged frames on the wire).

use std::{
    fs::File,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

/// The MAC address of `dev` in namespace `ns`.
pub fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = crate::env::must("ip", &["-n", ns, "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let s = v[0]["address"].as_str().expect("address");
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).expect("hex");
    }
    m
}

/// Sends `frame` out of `dev` in `ns` and returns the first frame received on `dev` for
/// which `want` is true, or None after `timeout`.
pub fn exchange(
    ns: &str,
    dev: &str,
    frame: &[u8],
    timeout: Duration,
    want: impl Fn(&[u8]) -> bool + Send + 'static,
) -> Option<Vec<u8>> {
    let (ns, dev, frame) = (ns.to_string(), dev.to_string(), frame.to_vec());
    std::thread::spawn(move || {
        let f = File::open(format!("/run/netns/{ns}")).expect("open netns");
        // SAFETY: setns on an fd we own, in a thread of our own that ends here.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        let name = std::ffi::CString::new(dev).expect("dev name");
        // SAFETY: plain libc calls with valid arguments; buffers outlive the calls.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            assert!(ifindex > 0, "no such device");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let s = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
            assert!(s >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            let sp = &sll as *const libc::sockaddr_ll as *const libc::sockaddr;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            assert_eq!(
                libc::bind(s, sp, len),
                0,
                "bind: {}",
                std::io::Error::last_os_error()
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                s,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let sent = libc::sendto(s, frame.as_ptr().cast(), frame.len(), 0, sp, len);
            assert_eq!(
                sent,
                frame.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
            // The receive path moves the outer VLAN tag into metadata; PACKET_AUXDATA hands
            // it back so the frame can be seen as it was on the wire (as libpcap does).
            let one: libc::c_int = 1;
            libc::setsockopt(
                s,
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                &one as *const _ as *const libc::c_void,
                4,
            );
            let deadline = Instant::now() + timeout;
            let mut buf = vec![0u8; 4096];
            let mut cbuf = [0u64; 64];
            let mut found = None;
            while Instant::now() < deadline {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_name = &mut from as *mut _ as *mut libc::c_void;
                msg.msg_namelen = len;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = cbuf.as_mut_ptr().cast();
                msg.msg_controllen = std::mem::size_of_val(&cbuf);
                let n = libc::recvmsg(s, &mut msg, 0);
                // Skip our own outgoing frame.
                if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                let mut frame = buf[..n as usize].to_vec();
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = &*(libc::CMSG_DATA(c) as *const libc::tpacket_auxdata);
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && frame.len() >= 12 {
                            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                                aux.tp_vlan_tpid
                            } else {
                                0x8100
                            };
                            let mut tag = tpid.to_be_bytes().to_vec();
                            tag.extend_from_slice(&aux.tp_vlan_tci.to_be_bytes());
                            frame.splice(12..12, tag);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
                if want(&frame) {
                    found = Some(frame);
                    break;
                }
            }
            libc::close(s);
            found
        }
    })
    .join()
    .expect("raw socket thread")
}

/// What [`flood`] saw.
pub struct Flood {
    /// Frames sent.
    pub sent: usize,
    /// Frames received on the device that the filter kept, in order.
    pub received: Vec<Vec<u8>>,
    /// From just before the first frame was sent until receiving stopped: every answer to
    /// the flood was made inside this window.
    pub elapsed: Duration,
}

/// Opens an AF_PACKET socket bound to `dev` in the calling thread's network namespace.
///
/// # Safety
/// Plain libc calls; the caller closes the returned descriptor.
unsafe fn packet_socket(dev: &str) -> (i32, libc::sockaddr_ll) {
    let name = std::ffi::CString::new(dev).expect("dev name");
    // SAFETY: as documented; `sll` is a zeroed plain struct.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert!(ifindex > 0, "no such device {dev}");
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let s = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
        assert!(s >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        let sp = &sll as *const libc::sockaddr_ll as *const libc::sockaddr;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        assert_eq!(
            libc::bind(s, sp, len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        (s, sll)
    }
}

fn enter(ns: &str) {
    let f = File::open(format!("/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns on an fd we own, in a thread of our own.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Sends `frames` (cycling through them) out of `dev` in `ns`, `per_ms` frames a millisecond,
/// while collecting every frame received on `dev` that `want` keeps. Once half of the frames
/// are out, `during` runs in the calling thread; sending goes on until every frame is out
/// and `during` has returned, so `during` happens inside the flood. Receiving stops
/// `linger` after the last frame.
pub fn flood<T>(
    ns: &str,
    dev: &str,
    frames: &[Vec<u8>],
    per_ms: usize,
    linger: Duration,
    want: impl Fn(&[u8]) -> bool + Send + 'static,
    during: impl FnOnce() -> T,
) -> (Flood, T) {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = {
        let (ns, dev, stop) = (ns.to_string(), dev.to_string(), stop.clone());
        std::thread::spawn(move || {
            enter(&ns);
            let mut got = Vec::new();
            // SAFETY: a socket of our own, closed below; the buffers outlive every call.
            unsafe {
                let (s, sll) = packet_socket(&dev);
                // Room for every answer even if this thread falls behind (root may force it).
                let big: libc::c_int = 64 << 20;
                libc::setsockopt(
                    s,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &big as *const _ as *const libc::c_void,
                    4,
                );
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                libc::setsockopt(
                    s,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                );
                ready_tx.send(()).expect("ready");
                let mut buf = vec![0u8; 4096];
                loop {
                    let mut from = sll;
                    let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    let n = libc::recvfrom(
                        s,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                        &mut flen,
                    );
                    if n <= 0 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        continue;
                    }
                    if from.sll_pkttype == libc::PACKET_OUTGOING {
                        continue;
                    }
                    let f = &buf[..n as usize];
                    if want(f) {
                        got.push(f.to_vec());
                    }
                }
                libc::close(s);
            }
            got
        })
    };
    ready_rx.recv().expect("receiver ready");

    let half = frames.len() / 2;
    let during_done = Arc::new(AtomicBool::new(false));
    let (half_tx, half_rx) = mpsc::channel();
    let start = Instant::now();
    let sender = {
        let (ns, dev, frames) = (ns.to_string(), dev.to_string(), frames.to_vec());
        let during_done = during_done.clone();
        std::thread::spawn(move || {
            enter(&ns);
            let mut sent = 0usize;
            // SAFETY: a socket of our own, closed below; each frame outlives its sendto.
            unsafe {
                let (s, sll) = packet_socket(&dev);
                let sp = &sll as *const libc::sockaddr_ll as *const libc::sockaddr;
                let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let tick = Instant::now();
                while sent < frames.len() || !during_done.load(Ordering::Relaxed) {
                    let f = &frames[sent % frames.len()];
                    let r = libc::sendto(s, f.as_ptr().cast(), f.len(), 0, sp, len);
                    assert_eq!(
                        r,
                        f.len() as isize,
                        "sendto: {}",
                        std::io::Error::last_os_error()
                    );
                    sent += 1;
                    if sent == half {
                        let _ = half_tx.send(());
                    }
                    // Pace: `per_ms` frames a millisecond on average.
                    let due = Duration::from_micros((sent * 1000 / per_ms.max(1)) as u64);
                    let now = tick.elapsed();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
                libc::close(s);
            }
            sent
        })
    };
    half_rx.recv().expect("half of the flood sent");
    let out = during();
    during_done.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    std::thread::sleep(linger);
    stop.store(true, Ordering::Relaxed);
    let received = receiver.join().expect("receiver");
    let elapsed = start.elapsed();
    (
        Flood {
            sent,
            received,
            elapsed,
        },
        out,
    )
}
