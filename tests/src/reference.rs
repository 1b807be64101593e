//! The verdict the shared blocker-common code reaches on the host for a DNS message, with
//! the kernel's own maps: the reference the real program is compared with.

/// What blocker-common decides on the host for a DNS message, with the kernel's maps and key
/// secret (`maps.key_secret()`): None = pass; Some(None) = drop; Some(Some(bytes)) = this
/// answer.
/// `gates` comes from [`gates_of`] (one large value: read once); `tcp`: the message came over
/// TCP (a tcp-only rule then passes it, as the XDP program does).
pub fn reference(
    maps: &blocker::kernel::Maps,
    secret: &blocker_common::key::KeySecret,
    gates: &blocker_common::Gates,
    msg: &[u8],
    tcp: bool,
) -> Option<Option<Vec<u8>>> {
    use blocker_common::{
        answer::{answer_room, write_answer},
        dns::{decide, parse_query, Client, Scratch, LOAD_MAX},
        Action,
    };
    let cfg = maps.config().ok()?;
    let mut s = Box::new(Scratch::zeroed());
    let n = msg.len().min(LOAD_MAX);
    s.msg[..n].copy_from_slice(&msg[..n]);
    let q = match parse_query(&mut s, n, msg.len(), secret) {
        Ok(q) => q,
        Err(r) if r.drops_unjudged() => return Some(None),
        Err(_) => return None,
    };
    // A client in no jurisdiction, at time 0: callers compare unscoped rule sets without
    // windows.
    let d = decide(
        &cfg,
        secret,
        &mut s,
        &q,
        &Client::default(),
        |k| {
            maps.rules
                .get(k, cfg.epoch)
                .ok()
                .flatten()
                .map(|(set, _)| set)
        },
        |o| gates.get(cfg.epoch, o),
    );
    let slot = d.hit;
    match Action::from_u8(slot.action) {
        Action::Pass | Action::None => None,
        Action::Tc if tcp => None,
        Action::Drop => Some(None),
        a => {
            let at = blocker_common::order_entry(cfg.epoch, slot.order_id);
            let order = maps.orders.get(&at, 0).ok();
            // The entry for the query's type, else the set's default; neither: NODATA.
            let get = |t| {
                maps.local
                    .get(&blocker_common::local_key(slot.local, t), 0)
                    .ok()
            };
            let local = match slot.local {
                0 => None,
                _ => get(q.qtype).or_else(|| get(0)),
            };
            let a = if slot.local != 0 && local.is_none() && a == Action::Sinkhole {
                Action::Nodata
            } else {
                a
            };
            let len = write_answer(
                &mut s,
                &q,
                answer_room(&cfg, msg.len(), tcp),
                a,
                &cfg,
                order.as_ref(),
                local.as_ref(),
            );
            Some(Some(s.msg[..len].to_vec()))
        }
    }
}

/// Every order's gate in the kernel.
pub fn gates_of(maps: &blocker::kernel::Maps) -> Box<blocker_common::Gates> {
    maps.gates().expect("BLK_GATES")
}
