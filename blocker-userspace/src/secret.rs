//! The key secret (see `blocker_common::key`): the two secret bases of the name → key hash,
//! drawn once per installation, when the controller first meets empty maps.
//!
//! It lives in two places, both readable by root only: the pinned map `BLK_KEY` (which the
//! XDP program reads) and the file `key` of the state directory (mode 0600), so that maps
//! re-created after a reboot, or after the pinned directory was removed, are restored with
//! the same keys the recorded rules were planned with. The two must agree; [`establish`]
//! checks that every time the controller opens the maps. The secret is never printed.

use std::{fs, io::Write, os::unix::fs::OpenOptionsExt, path::PathBuf};

use blocker_common::{
    key::{KeySecret, P61},
    MAP_KEY,
};

use crate::{
    error::{Message, OpContext, OpError},
    kernel::{KernelError, Maps, Pins},
    state::{StateDir, StateError},
};

/// Why the key secret could not be drawn, read or made consistent.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("drawn bases out of range")]
    Drawn,
    /// The recorded file does not parse.
    #[error("{}:1: corrupt key secret", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    /// The pinned map holds bases blocker would not have written.
    #[error(
        "{} holds a damaged key secret (bases out of range or powers that do not match): \
         it was not written by blocker; run `blocker detach --purge` to start afresh",
        .0.display()
    )]
    Damaged(PathBuf),
    /// The pinned and the recorded secret differ.
    #[error(
        "the key secret pinned in {} differs from the one recorded in {}: the state \
         directory does not belong to the program pinned in {} (check --state-dir and \
         --bpffs)",
        map.display(),
        file.display(),
        bpffs.display()
    )]
    Mismatch {
        map: PathBuf,
        file: PathBuf,
        bpffs: PathBuf,
    },
    /// Rules are enforced but the pinned map has no secret.
    #[error(
        "{} holds no key secret, yet rules are enforced from {}: the pinned maps were not \
         created by this blocker; run `blocker detach --purge` to start afresh",
        map.display(),
        bpffs.display()
    )]
    NotPinned { map: PathBuf, bpffs: PathBuf },
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Op(#[from] OpError),
}

/// What is wrong with the recorded secret's file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("expected two hexadecimal numbers, found {0} fields")]
    Fields(usize),
    #[error("first base is not hexadecimal")]
    FirstNotHex(#[source] std::num::ParseIntError),
    #[error("second base is not hexadecimal")]
    SecondNotHex(#[source] std::num::ParseIntError),
    #[error("a base is out of range")]
    OutOfRange,
}

pub type Result<T, E = SecretError> = std::result::Result<T, E>;

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
                .map_err(|e| Message(format!("getrandom: {e}")))
                .op(|| "drawing the key secret".to_string())?;
            let x = u64::from_le_bytes(buf) & P61;
            if KeySecret::valid_base(x) {
                *b = x;
                break;
            }
        }
    }
    KeySecret::from_bases(base[0], base[1]).ok_or(SecretError::Drawn)
}

/// The secret recorded in the state directory, if any.
pub fn recorded(dir: &StateDir) -> Result<Option<KeySecret>> {
    let p = path(dir);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(OpError {
                context: format!("reading {}", p.display()),
                source: Box::new(e),
            }
            .into())
        }
    };
    match parse(&text) {
        Ok(k) => Ok(Some(k)),
        Err(source) => Err(SecretError::Corrupt { path: p, source }),
    }
}

/// Parses the file: two bases in hexadecimal on one line.
fn parse(text: &str) -> std::result::Result<KeySecret, FileError> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [a, b] = fields.as_slice() else {
        return Err(FileError::Fields(fields.len()));
    };
    let a = u64::from_str_radix(a, 16).map_err(FileError::FirstNotHex)?;
    let b = u64::from_str_radix(b, 16).map_err(FileError::SecondNotHex)?;
    KeySecret::from_bases(a, b).ok_or(FileError::OutOfRange)
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
        .op(|| format!("creating {}", tmp.display()))?;
    writeln!(f, "{:016x} {:016x}", secret.base[0], secret.base[1])
        .and_then(|()| f.sync_all())
        .op(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &p).op(|| format!("creating {}", p.display()))?;
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
        Some(k) if !k.is_valid() => return Err(SecretError::Damaged(map_path)),
        other => other,
    };
    let stored = recorded(dir)?;
    match (pinned, stored) {
        (Some(k), Some(s)) if k == s => Ok(k),
        (Some(_), Some(_)) => Err(SecretError::Mismatch {
            map: map_path,
            file: file_path,
            bpffs: pins.dir.clone(),
        }),
        (Some(k), None) => {
            record(dir, &k)?;
            log::warn!(
                "recorded the pinned key secret in {} (it was missing)",
                file_path.display()
            );
            Ok(k)
        }
        (None, _) if !fresh => Err(SecretError::NotPinned {
            map: map_path,
            bpffs: pins.dir.clone(),
        }),
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

/// Before `blocker upgrade` moves the recorded rules into new maps (which get the recorded
/// secret, see [`establish`]): the secret the pinned maps use is recorded if the state
/// directory lacks it, and refused if it differs. A pinned key map of another layout than this
/// build's cannot be read; the recorded secret (or, with none, a new one) then serves.
pub fn carry_over(pins: &Pins, dir: &StateDir) -> Result<()> {
    let map_path = pins.map(MAP_KEY);
    let mut pinned = None;
    if map_path.exists() {
        let data = aya::maps::MapData::from_pin(&map_path).map_err(KernelError::from)?;
        if let Ok(map) = aya::maps::Array::<_, KeySecret>::try_from(aya::maps::Map::Array(data)) {
            let k = map.get(&0, 0).map_err(KernelError::from)?;
            pinned = (k != KeySecret::UNSET).then_some(k);
        }
    }
    match (pinned, recorded(dir)?) {
        (Some(k), _) if !k.is_valid() => Err(SecretError::Damaged(map_path)),
        (Some(k), Some(s)) if k != s => Err(SecretError::Mismatch {
            map: map_path,
            file: path(dir),
            bpffs: pins.dir.clone(),
        }),
        (Some(k), None) => record(dir, &k),
        _ => Ok(()),
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

    /// The refusals print what the anyhow messages they replaced printed (written out here).
    #[test]
    fn refusal_messages_are_unchanged() {
        let map = PathBuf::from("/b/BLK_KEY");
        let e = SecretError::Mismatch {
            map: map.clone(),
            file: "/s/key".into(),
            bpffs: "/b".into(),
        };
        assert_eq!(
            e.to_string(),
            "the key secret pinned in /b/BLK_KEY differs from the one recorded in /s/key: the \
             state directory does not belong to the program pinned in /b (check --state-dir and \
             --bpffs)"
        );
        let e = SecretError::NotPinned {
            map: map.clone(),
            bpffs: "/b".into(),
        };
        assert_eq!(
            e.to_string(),
            "/b/BLK_KEY holds no key secret, yet rules are enforced from /b: the pinned maps were \
             not created by this blocker; run `blocker detach --purge` to start afresh"
        );
        assert_eq!(
            SecretError::Damaged(map).to_string(),
            "/b/BLK_KEY holds a damaged key secret (bases out of range or powers that do not \
             match): it was not written by blocker; run `blocker detach --purge` to start afresh"
        );
    }

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
        // The whole chain, as `blocker: {e:#}` prints it.
        fs::write(path(&sd), "zz 100000000").expect("write");
        let e = anyhow::Error::from(recorded(&sd).expect_err("zz"));
        assert_eq!(
            format!("{e:#}"),
            format!(
                "{}:1: corrupt key secret: first base is not hexadecimal: invalid digit found in \
                 string",
                path(&sd).display()
            )
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
