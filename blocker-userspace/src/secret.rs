//! The key secret (see `blocker_common::key`): the two secret bases of the name → key hash,
//! drawn once per installation, when the controller first meets empty maps.
//!
//! It lives in two places, both readable by root only: the pinned map `BLK_KEY` (which the
//! XDP program reads) and the file `key` of the state directory (mode 0600), so that maps
//! re-created after a reboot, or after the pinned directory was removed, are restored with
//! the same keys the recorded rules were planned with. The two must agree; [`establish`]
//! checks that every time the controller opens the maps. The secret is never printed.

use std::{fs, io::Write, os::unix::fs::OpenOptionsExt, path::PathBuf};

use anyhow::{bail, Context, Result};
use blocker_common::{
    key::{KeySecret, P61},
    MAP_KEY,
};

use crate::{
    kernel::{Maps, Pins},
    state::StateDir,
};

/// File name of the recorded secret in the state directory.
pub const FILE: &str = "key";

/// Where the state directory records the secret.
pub fn path(dir: &StateDir) -> PathBuf {
    dir.dir.join(FILE)
}

/// A new secret: each base uniform in [2^32, p − 1], from the kernel's random source
/// (rejection sampling of 61-bit numbers: about one draw in 2^29 is rejected).
pub fn generate() -> Result<KeySecret> {
    let mut base = [0u64; 2];
    for b in &mut base {
        loop {
            let mut buf = [0u8; 8];
            getrandom::fill(&mut buf)
                .map_err(|e| anyhow::anyhow!("getrandom: {e}"))
                .context("drawing the key secret")?;
            let x = u64::from_le_bytes(buf) & P61;
            if KeySecret::valid_base(x) {
                *b = x;
                break;
            }
        }
    }
    KeySecret::from_bases(base[0], base[1]).context("drawn bases out of range")
}

/// The secret recorded in the state directory, if any.
pub fn recorded(dir: &StateDir) -> Result<Option<KeySecret>> {
    let p = path(dir);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    parse(&text)
        .map(Some)
        .with_context(|| format!("{}:1: corrupt key secret", p.display()))
}

/// Parses the file: two bases in hexadecimal on one line.
fn parse(text: &str) -> Result<KeySecret> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [a, b] = fields.as_slice() else {
        bail!(
            "expected two hexadecimal numbers, found {} fields",
            fields.len()
        );
    };
    let a = u64::from_str_radix(a, 16).context("first base is not hexadecimal")?;
    let b = u64::from_str_radix(b, 16).context("second base is not hexadecimal")?;
    KeySecret::from_bases(a, b).context("a base is out of range")
}

/// Records `secret` in the state directory (mode 0600, write then rename).
fn record(dir: &StateDir, secret: &KeySecret) -> Result<()> {
    dir.ensure()?;
    let p = path(dir);
    let tmp = dir.dir.join(format!("{FILE}.new"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(f, "{:016x} {:016x}", secret.base[0], secret.base[1])
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &p).with_context(|| format!("creating {}", p.display()))?;
    if let Ok(d) = fs::File::open(&dir.dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The secret in force, made consistent between the pinned map and the state directory.
/// `fresh`: the maps were just created (nothing enforced yet).
///
/// - Both hold the same secret: that one.
/// - They differ: refused, naming both (the state directory belongs to another installation,
///   or one of them was tampered with).
/// - Only the state directory has one and the maps are fresh (a reboot, or a removed pinned
///   directory): written into the map, so the restored rules get the keys they had.
/// - Only the map has one: recorded in the state directory.
/// - Neither, maps fresh: a new secret, recorded first, then pinned (a crash in between
///   leaves the record, which the next command pins).
/// - The map has none, or a damaged one, while rules are enforced: refused.
pub fn establish(maps: &mut Maps, pins: &Pins, dir: &StateDir, fresh: bool) -> Result<KeySecret> {
    let map_path = pins.map(MAP_KEY);
    let file_path = path(dir);
    let pinned = maps.key_secret()?;
    let pinned = match pinned {
        Some(k) if !k.is_valid() => bail!(
            "{} holds a damaged key secret (bases out of range or powers that do not match): \
             it was not written by blocker; run `blocker detach --purge` to start afresh",
            map_path.display()
        ),
        other => other,
    };
    let stored = recorded(dir)?;
    match (pinned, stored) {
        (Some(k), Some(s)) if k == s => Ok(k),
        (Some(_), Some(_)) => bail!(
            "the key secret pinned in {} differs from the one recorded in {}: the state \
             directory does not belong to the program pinned in {} (check --state-dir and \
             --bpffs)",
            map_path.display(),
            file_path.display(),
            pins.dir.display()
        ),
        (Some(k), None) => {
            record(dir, &k)?;
            log::warn!(
                "recorded the pinned key secret in {} (it was missing)",
                file_path.display()
            );
            Ok(k)
        }
        (None, _) if !fresh => bail!(
            "{} holds no key secret, yet rules are enforced from {}: the pinned maps were not \
             created by this blocker; run `blocker detach --purge` to start afresh",
            map_path.display(),
            pins.dir.display()
        ),
        (None, Some(s)) => {
            maps.set_key_secret(&s)?;
            Ok(s)
        }
        (None, None) => {
            let k = generate()?;
            record(dir, &k)?;
            maps.set_key_secret(&k)?;
            Ok(k)
        }
    }
}

/// The secret for computing keys outside a change (`explain`): the pinned one when blocker is
/// loaded, else the recorded one, else a throwaway one (keys then only need to agree with
/// each other).
pub fn for_reading(pins: &Pins, dir: &StateDir) -> Result<KeySecret> {
    if pins.loaded() {
        if let Some(k) = Maps::open(pins)?.key_secret()? {
            return Ok(k);
        }
    }
    match recorded(dir)? {
        Some(k) => Ok(k),
        None => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_valid_and_differ() {
        let a = generate().expect("secret");
        let b = generate().expect("secret");
        assert!(a.is_valid() && b.is_valid());
        assert_ne!(a.base, b.base);
    }

    #[test]
    fn the_file_round_trips_and_bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("blk-secret-test-{}", std::process::id()));
        let sd = StateDir::new(&dir);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(recorded(&sd).expect("none yet"), None);
        let k = generate().expect("secret");
        record(&sd, &k).expect("record");
        assert_eq!(recorded(&sd).expect("read"), Some(k));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path(&sd)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        for bad in [
            "",
            "12",
            "zz 100000000",
            "1 100000000",
            "100000000 1fffffffffffffff",
        ] {
            fs::write(path(&sd), bad).expect("write");
            let e = recorded(&sd).expect_err(bad);
            assert!(
                format!("{e:#}").contains("key:1: corrupt key secret"),
                "{e:#}"
            );
        }
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
