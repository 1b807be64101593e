//! The verdict the shared blocker-common code reaches on the host for a DNS message, with
//! the kernel's own maps: the reference the real program is compared with.

/// What blocker-common decides on the host for a DNS message, with the kernel's maps and key
/// secret (`maps.key_secret()`): None = pass; Some(None) = drop; Some(Some(bytes)) = this
/// answer.
pub fn reference(
    maps: &blocker::kernel::Maps,
    secret: &blocker_common::key::KeySecret,
    msg: &[u8],
) -> Option<Option<Vec<u8>>> {
    use blocker_common::{
        answer::{write_answer, MAX_GROWTH},
        dns::{find_rule, parse_query, Scratch, LOAD_MAX},
        Action,
    };
    let cfg = maps.config().ok()?;
    let active = (cfg.active & 1) as usize;
    let mut s = Box::new(Scratch::zeroed());
    let n = msg.len().min(LOAD_MAX);
    s.msg[..n].copy_from_slice(&msg[..n]);
    let q = parse_query(&mut s, n, msg.len(), secret).ok()?;
    let slot = find_rule(&cfg, secret, &mut s, &q, |k| {
        maps.rules.get(k, 0).ok().map(|v| v.sets[active])
    })?;
    match Action::from_u8(slot.action) {
        Action::Pass | Action::None => None,
        Action::Drop => Some(None),
        a => {
            let at = blocker_common::order_entry(cfg.active, slot.order_id);
            let order = maps.orders.get(&at, 0).ok();
            let len = write_answer(
                &mut s,
                &q,
                msg.len(),
                msg.len() + MAX_GROWTH,
                a,
                &cfg,
                order.as_ref(),
            );
            Some(Some(s.msg[..len].to_vec()))
        }
    }
}
