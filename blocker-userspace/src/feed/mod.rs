//! Feeds: orders whose whole content is an RPZ zone followed from primaries over AXFR/IXFR,
//! woken by NOTIFY, optionally authenticated with TSIG.
//!
//! - [`Feed`]s are configured by `blocker feed add/remove` and recorded in `feeds.json` in the
//!   state directory.
//! - `blocker follow` ([`follow`]) keeps them current: it transfers each zone ([`xfr`]), keeps
//!   the last applied copy as a zone file ([`zone`]), turns it into the order's rules with the
//!   same RPZ reading as `rules load --format rpz` (`blocker_lists::parse_rpz_records`), and
//!   applies them through the controller ([`crate::txn::Controller::apply`]), which writes only
//!   the names whose rules change. It answers NOTIFY from the configured primaries ([`notify`]).
//! - What happened is in `feeds/<zone>.status.json` ([`FeedStatus`]), read by `feed list`,
//!   `blocker status` and `blocker serve`.
//!
//! Layout in the state directory:
//! - `feeds.json`: the configured feeds.
//! - `feeds/<zone>.zone`: the zone as last applied, one record per line (the SOA first); its
//!   serial is where a restarted `follow` resumes by IXFR, and rule sources point into it.
//! - `feeds/<zone>.zone.rejected`: the last copy refused (records that are not valid RPZ),
//!   for the operator to look at; the messages point into it.
//! - `feeds/<zone>.status.json`: the follower's view of the feed.
//! - `feeds/follow.lock`: held by the running `follow` (one per state directory).

pub mod follow;
pub mod notify;
pub mod xfr;
pub mod zone;

use std::{
    fs,
    io::Write,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use domain::tsig::{Algorithm, Key, KeyName};
use serde::{Deserialize, Serialize};

use crate::state::StateDir;

/// `feeds.json` in the state directory.
pub const FEEDS_FILE: &str = "feeds.json";
/// Directory of the zones and status files.
pub const FEEDS_DIR: &str = "feeds";
const FORMAT_VERSION: u32 = 1;
/// The DNS port primaries listen on unless told otherwise.
pub const DNS_PORT: u16 = 53;

/// What a feed's order does once the zone has expired (no primary reached for the SOA expire
/// time).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnExpire {
    /// Keep enforcing the last good copy (reported loudly, at every retry).
    #[default]
    Keep,
    /// Remove the order's rules (as BIND unloads an expired policy zone); they come back with
    /// the next successful transfer.
    Stop,
}

impl OnExpire {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExpire::Keep => "keep",
            OnExpire::Stop => "stop",
        }
    }
}

/// One followed zone.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Feed {
    /// The order the zone is the whole content of.
    pub order: String,
    /// The zone's name (lower case, no final dot).
    pub zone: String,
    /// Primaries, tried in this order.
    pub primaries: Vec<SocketAddr>,
    /// TSIG key file (BIND `key` clause, Knot `keymgr` output or `[alg:]name:secret`).
    #[serde(default)]
    pub tsig_key: Option<PathBuf>,
    /// Seconds between SOA checks, instead of the zone's SOA refresh.
    #[serde(default)]
    pub refresh: Option<u32>,
    #[serde(default)]
    pub on_expire: OnExpire,
    pub added: u64,
}

/// `feeds.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FeedsFile {
    pub format: u32,
    pub feeds: Vec<Feed>,
}

impl Default for FeedsFile {
    fn default() -> Self {
        FeedsFile {
            format: FORMAT_VERSION,
            feeds: Vec::new(),
        }
    }
}

impl FeedsFile {
    pub fn by_order(&self, order: &str) -> Option<&Feed> {
        self.feeds.iter().find(|f| f.order == order)
    }
}

/// Errors of feed configuration and files.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {source}", path = path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has format {found}, this blocker reads format {FORMAT_VERSION}", path = path.display())]
    Format { path: PathBuf, found: u32 },
    #[error("--primary {given:?}: {why} (give ADDRESS or ADDRESS:PORT, IPv6 as [ADDRESS]:PORT)")]
    Primary { given: String, why: String },
    #[error("--zone {given:?}: {why}")]
    Zone { given: String, why: String },
    #[error("{path}:{line}: {why}", path = path.display())]
    Key {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FeedError + '_ {
    move |source| FeedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `feeds.json` of a state directory.
pub fn feeds_path(dir: &StateDir) -> PathBuf {
    dir.dir.join(FEEDS_FILE)
}

/// The zones and status files of a state directory.
pub fn feeds_dir(dir: &StateDir) -> PathBuf {
    dir.dir.join(FEEDS_DIR)
}

/// Whether a `blocker follow` holds this state directory's lock (`feeds/follow.lock`), read
/// from the kernel's table of locks (`/proc/locks`) without taking it: a test lock could make
/// a follower starting at that instant believe another one runs.
pub fn follower_running(dir: &StateDir) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = fs::metadata(feeds_dir(dir).join("follow.lock")) else {
        return false;
    };
    let dev = m.dev();
    // As fs/locks.c prints it: MAJOR:MINOR:INODE, the first two in hex.
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        m.ino()
    );
    fs::read_to_string("/proc/locks").is_ok_and(|t| {
        t.lines()
            .any(|l| l.contains("FLOCK") && l.split_whitespace().any(|w| w == id))
    })
}

/// The feeds of a state directory (none if it has no `feeds.json`).
pub fn load_feeds(dir: &StateDir) -> Result<FeedsFile, FeedError> {
    let path = feeds_path(dir);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FeedsFile::default()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let f: FeedsFile = serde_json::from_slice(&text).map_err(|source| FeedError::Corrupt {
        path: path.clone(),
        source,
    })?;
    if f.format != FORMAT_VERSION {
        return Err(FeedError::Format {
            path,
            found: f.format,
        });
    }
    Ok(f)
}

/// Writes `feeds.json` (write, sync, rename: a reader sees the old or the new file whole).
/// Call with the state directory locked.
pub fn save_feeds(dir: &StateDir, feeds: &FeedsFile) -> Result<(), FeedError> {
    let bytes = serde_json::to_vec_pretty(feeds).map_err(|source| FeedError::Corrupt {
        path: feeds_path(dir),
        source,
    })?;
    write_atomic(&feeds_path(dir), &bytes)
}

/// Replaces `path` with `bytes` by write, sync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FeedError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// A file name for a zone: its name where that is plain (letters, digits, `-`, `_`, `.`),
/// otherwise hex.
pub fn file_stem(zone: &str) -> String {
    let plain = !zone.is_empty()
        && !zone.starts_with('.')
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        zone.to_string()
    } else {
        zone.bytes().map(|b| format!("{b:02x}")).collect()
    }
}

/// The last applied copy of `zone`.
pub fn zone_path(dir: &StateDir, zone: &str) -> PathBuf {
    feeds_dir(dir).join(format!("{}.zone", file_stem(zone)))
}

/// The follower's status of `zone`.
pub fn status_path(dir: &StateDir, zone: &str) -> PathBuf {
    feeds_dir(dir).join(format!("{}.status.json", file_stem(zone)))
}

/// A zone name as given (IDN, upper case, final dot) in canonical presentation form.
pub fn normalize_zone(given: &str) -> Result<String, FeedError> {
    let err = |why: String| FeedError::Zone {
        given: given.to_string(),
        why,
    };
    if given.trim_end_matches('.').is_empty() {
        return Err(err("the root is not an RPZ zone".into()));
    }
    let name = blocker_lists::normalize_name(given).map_err(|e| err(e.to_string()))?;
    Ok(name.to_string())
}

/// `ADDRESS`, `ADDRESS:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
pub fn parse_primary(given: &str) -> Result<SocketAddr, FeedError> {
    let err = |why: &str| FeedError::Primary {
        given: given.to_string(),
        why: why.to_string(),
    };
    if let Ok(a) = given.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(err("port 0"));
        }
        return Ok(a);
    }
    if let Ok(ip) = given.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    Err(err(
        "not an IP address (primaries are given by address, not by name)",
    ))
}

/// A TSIG key read from a file.
#[derive(Clone, Debug)]
pub struct TsigKey {
    pub key: Arc<Key>,
    /// The file, for messages.
    pub path: PathBuf,
}

impl TsigKey {
    /// The key's name (without the final dot).
    pub fn name(&self) -> String {
        self.key.name().to_string()
    }

    /// An empty message signed with the key at a fixed time: equal for keys of the same
    /// name, algorithm and secret (the secret itself is not readable from a `Key`).
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut msg = domain::base::MessageBuilder::new_vec().additional();
        let _ = domain::tsig::ClientTransaction::request(
            self.key.clone(),
            &mut msg,
            domain::rdata::tsig::Time48::from_u64(1_800_000_000),
        );
        msg.finish()
    }
}

/// Reads a TSIG key file, in any of the forms DNS operators hand keys around in:
/// - BIND's `tsig-keygen` output: `key "NAME" { algorithm ALG; secret "BASE64"; };`
/// - Knot's `keymgr -t NAME ALG` output: `key:` / `- id: NAME` / `algorithm: ALG` /
///   `secret: BASE64`
/// - one line `[ALG:]NAME:BASE64` (kdig's `-y`; the algorithm defaults to hmac-sha256).
///
/// `#` and `//` comments are ignored (`//` only at the start of a line or after white space:
/// base64 secrets hold `/`), and so is what follows a `;` that ends no statement (zone-file
/// style comments). BIND's clause may be on one line. One key per file.
pub fn load_key(path: &Path) -> Result<TsigKey, FeedError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse_key(&text, path)
}

/// The statements of a key file's line: comments (`#`, and `//` at the start or after white
/// space: base64 holds `/`, so a `//` inside a secret is not one) dropped, then split at
/// BIND's `;`, `{` and `}` outside quotes (a whole `key "n" { algorithm A; secret "S"; };`
/// on one line is three statements).
/// Each statement comes with whether a `;` precedes it on the line (what follows a `;` may
/// be a zone-file style comment).
fn statements(line: &str) -> Vec<(bool, &str)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let (mut quoted, mut start, mut after_semicolon) = (false, 0, false);
    let mut end = b.len();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'#' if !quoted => {
                end = i;
                break;
            }
            b'/' if !quoted
                && b.get(i + 1) == Some(&b'/')
                && (i == 0 || b[i - 1].is_ascii_whitespace()) =>
            {
                end = i;
                break;
            }
            b';' | b'{' | b'}' if !quoted => {
                out.push((after_semicolon, line[start..i].trim()));
                after_semicolon |= c == b';';
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < end {
        out.push((after_semicolon, line[start..end].trim()));
    }
    out.retain(|(_, s)| !s.is_empty());
    out
}

fn parse_key(text: &str, path: &Path) -> Result<TsigKey, FeedError> {
    let err = |line: usize, why: String| FeedError::Key {
        path: path.to_path_buf(),
        line,
        why,
    };
    let mut name: Option<(usize, String)> = None;
    let mut alg: Option<(usize, String)> = None;
    let mut secret: Option<(usize, String)> = None;
    let mut first_line = 0;
    let mut words = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        for (after_semicolon, l) in statements(raw) {
            let lower = l.to_ascii_lowercase();
            // After a `;`, prose is a comment (`; secret for the edge`): a statement's value
            // is one word.
            let one_value = |keyword: &str| {
                l[keyword.len()..]
                    .trim_start_matches(':')
                    .split_whitespace()
                    .count()
                    == 1
            };
            if after_semicolon
                && !["key", "secret", "algorithm"]
                    .iter()
                    .any(|k| lower.starts_with(k) && one_value(k))
            {
                break;
            }
            if first_line == 0 {
                first_line = line;
            }
            words += 1;
            let unq = |s: &str| s.trim().trim_matches('"').to_string();
            if let Some(rest) = lower
                .strip_prefix("key ")
                .or_else(|| lower.strip_prefix("key\t"))
            {
                let start = l.len() - rest.len();
                name = Some((line, unq(&l[start..])));
            } else if let Some(rest) = l
                .trim_start_matches("- ")
                .strip_prefix("id:")
                .map(str::trim)
            {
                name = Some((line, unq(rest)));
            } else if lower.starts_with("algorithm") {
                let rest = l["algorithm".len()..].trim_start_matches(':');
                alg = Some((line, unq(rest).to_ascii_lowercase()));
            } else if lower.starts_with("secret") {
                let rest = l["secret".len()..].trim_start_matches(':');
                secret = Some((line, unq(rest)));
            } else if l == "key:" {
                continue;
            } else if l.matches(':').count() >= 1 && !l.contains(' ') {
                // [ALG:]NAME:SECRET
                let parts: Vec<&str> = l.split(':').collect();
                let (a, n, s) = match parts.as_slice() {
                    [n, s] => ("hmac-sha256", *n, *s),
                    [a, n, s] => (*a, *n, *s),
                    _ => return Err(err(line, "expected [ALGORITHM:]NAME:SECRET".into())),
                };
                name = Some((line, n.to_string()));
                alg = Some((line, a.to_ascii_lowercase()));
                secret = Some((line, s.to_string()));
            } else {
                return Err(err(
                    line,
                    format!("{l:?}: not part of a TSIG key (expected BIND's `key` clause, Knot's keymgr output or [ALGORITHM:]NAME:SECRET)"),
                ));
            }
        }
    }
    if words == 0 {
        return Err(err(0, "empty key file".into()));
    }
    let (nline, name) = name.ok_or_else(|| err(first_line, "no key name".into()))?;
    let (aline, alg) = alg.unwrap_or((nline, "hmac-sha256".into()));
    let (sline, secret) = secret.ok_or_else(|| err(first_line, "no secret".into()))?;
    let algorithm = Algorithm::from_str(&alg).map_err(|_| {
        err(
            aline,
            format!("algorithm {alg:?}: use hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1"),
        )
    })?;
    let bits: Vec<u8> = domain::utils::base64::decode(&secret)
        .map_err(|e| err(sline, format!("secret: not base64 ({e})")))?;
    if bits.is_empty() {
        return Err(err(sline, "secret: empty".into()));
    }
    let kname = format!("{}.", name.trim_end_matches('.'));
    let kname =
        KeyName::from_str(&kname).map_err(|e| err(nline, format!("key name {name:?}: {e}")))?;
    let key = Key::new(algorithm, &bits, kname, None, None)
        .map_err(|e| err(sline, format!("key: {e}")))?;
    Ok(TsigKey {
        key: Arc::new(key),
        path: path.to_path_buf(),
    })
}

/// What `blocker follow` last knew of a feed (`feeds/<zone>.status.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FeedStatus {
    pub zone: String,
    pub order: String,
    /// Serial of the copy enforced now.
    pub serial: Option<u32>,
    /// Serial the primary last reported.
    pub primary_serial: Option<u32>,
    /// The primary that answered last.
    pub primary: Option<String>,
    /// Last SOA check (UNIX seconds).
    pub last_check: u64,
    /// Last time a primary answered and the copy was (made) current.
    pub last_success: u64,
    /// Since when the primary has had a serial the edge does not enforce (0: current).
    pub behind_since: u64,
    pub last_transfer: Option<TransferReport>,
    pub ixfr_count: u64,
    pub axfr_count: u64,
    /// Consecutive failed attempts.
    pub failures: u32,
    pub failures_total: u64,
    pub last_error: Option<String>,
    pub last_error_at: u64,
    /// Last NOTIFY accepted for the zone.
    pub last_notify: u64,
    /// From the last NOTIFY to the flip that enforced the serial it announced, in ms.
    pub notify_to_enforce_ms: Option<u64>,
    /// When the copy expires without contact with a primary (UNIX seconds; 0: no copy).
    pub expires_at: u64,
    pub expired: bool,
    /// `keep` or `stop`.
    pub on_expire: String,
    pub updated: u64,
}

impl FeedStatus {
    /// Whether the copy has expired at `now`: as `follow` recorded it, or by the clock since
    /// (a follower that stopped records nothing more).
    pub fn expired_at(&self, now: u64) -> bool {
        self.expired || (self.expires_at != 0 && now >= self.expires_at)
    }

    /// Seconds the edge has been behind the primary (0 when current).
    pub fn lag(&self, now: u64) -> u64 {
        if self.behind_since == 0 {
            0
        } else {
            now.saturating_sub(self.behind_since)
        }
    }
}

/// One applied transfer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TransferReport {
    /// `ixfr` or `axfr`.
    pub kind: String,
    /// Why an AXFR was made where an IXFR was asked for.
    pub fallback: Option<String>,
    pub from_serial: Option<u32>,
    pub serial: u32,
    pub primary: String,
    pub at: u64,
    /// Records received (IXFR: deleted plus added; AXFR: the whole zone).
    pub records: usize,
    /// Records in the zone after it.
    pub zone_records: usize,
    /// Rules of the order after it.
    pub rules: usize,
    /// Names whose map value changed in the kernel.
    pub names_changed: usize,
    pub generation: u32,
    /// The transfer itself, in ms.
    pub transfer_ms: u64,
    /// Reading the zone as RPZ and applying it (the controller's change), in ms.
    pub apply_ms: u64,
}

/// The status of `zone`, if `follow` wrote one.
pub fn load_status(dir: &StateDir, zone: &str) -> Option<FeedStatus> {
    let text = fs::read(status_path(dir, zone)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes the status of a feed.
pub fn save_status(dir: &StateDir, status: &FeedStatus) -> Result<(), FeedError> {
    let path = status_path(dir, &status.zone);
    let bytes = serde_json::to_vec_pretty(status).map_err(|source| FeedError::Corrupt {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, &bytes)
}

/// RFC 1982 serial number arithmetic: `a` is newer than `b`.
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries() {
        assert_eq!(
            parse_primary("192.0.2.1").ok(),
            Some("192.0.2.1:53".parse().expect("addr"))
        );
        assert_eq!(
            parse_primary("192.0.2.1:5300").ok(),
            Some("192.0.2.1:5300".parse().expect("addr"))
        );
        assert_eq!(
            parse_primary("2001:db8::1").ok(),
            Some("[2001:db8::1]:53".parse().expect("addr"))
        );
        assert_eq!(
            parse_primary("[2001:db8::1]:5300").ok(),
            Some("[2001:db8::1]:5300".parse().expect("addr"))
        );
        let e = parse_primary("primary.example").expect_err("a name");
        assert!(e.to_string().contains("not an IP address"), "{e}");
        assert!(parse_primary("192.0.2.1:0").is_err());
    }

    #[test]
    fn zones_and_file_names() {
        assert_eq!(
            normalize_zone("RPZ.Example.").ok().as_deref(),
            Some("rpz.example")
        );
        assert!(normalize_zone(".").is_err());
        assert_eq!(file_stem("rpz.example"), "rpz.example");
        assert_eq!(file_stem("a/b"), "612f62");
    }

    #[test]
    fn serials() {
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 1));
        assert!(!serial_newer(1, 2));
        assert!(serial_newer(0, u32::MAX), "wraps");
    }

    #[test]
    fn key_files_in_three_dialects() {
        let p = Path::new("k.key");
        let bind = "key \"edge-xfr\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n";
        let k = parse_key(bind, p).expect("bind");
        assert_eq!(k.name(), "edge-xfr");
        assert_eq!(k.key.algorithm(), Algorithm::Sha256);
        let knot = "# hmac-sha512:edge-xfr:c2VjcmV0\nkey:\n  - id: edge-xfr\n    algorithm: hmac-sha512\n    secret: c2VjcmV0c2VjcmV0c2VjcmV0\n";
        let k = parse_key(knot, p).expect("knot");
        assert_eq!(
            (k.name().as_str(), k.key.algorithm()),
            ("edge-xfr", Algorithm::Sha512)
        );
        let line = "hmac-sha384:edge-xfr:c2VjcmV0c2VjcmV0c2VjcmV0\n";
        let k = parse_key(line, p).expect("line");
        assert_eq!(k.key.algorithm(), Algorithm::Sha384);
        let e = parse_key(
            "key \"x\" {\n algorithm hmac-md5;\n secret \"c2VjcmV0\";\n};\n",
            p,
        )
        .expect_err("md5");
        assert_eq!(
            e.to_string(),
            "k.key:2: algorithm \"hmac-md5\": use hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1"
        );
        let e = parse_key("key \"x\" {\n secret \"!!\";\n};\n", p).expect_err("base64");
        assert!(
            e.to_string().starts_with("k.key:2: secret: not base64"),
            "{e}"
        );
        let e = parse_key("hello world\n", p).expect_err("junk");
        assert!(e.to_string().starts_with("k.key:1: \"hello world\""), "{e}");
    }

    /// A secret with `//` in it (base64 holds `/`: about one hmac-sha256 secret in a hundred)
    /// and BIND's clause on one line, as `feed add --help` shows it, read whole: the key
    /// signs as the same secret given in kdig's one-line form.
    #[test]
    fn key_files_with_slashes_and_on_one_line() {
        let p = Path::new("k.key");
        let secret = "VEBESGd2Zs31rq60uz6//Jgs4hg3k//VUdu7kg2onRQ=";
        let want = parse_key(&format!("hmac-sha256:edge-xfr:{secret}\n"), p)
            .expect("line")
            .fingerprint();
        let other = parse_key("hmac-sha256:edge-xfr:c2VjcmV0c2VjcmV0c2VjcmV0\n", p).expect("other");
        assert_ne!(
            other.fingerprint(),
            want,
            "another secret, another fingerprint"
        );
        let same = |k: &TsigKey| k.fingerprint() == want;
        for text in [
            format!("key \"edge-xfr\" {{\n algorithm hmac-sha256;\n secret \"{secret}\";\n}};\n"),
            format!("key \"edge-xfr\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n"),
            format!(
                "// a BIND comment\nkey \"edge-xfr\" {{ secret \"{secret}\"; }}; // trailing\n"
            ),
            format!("key:\n  - id: edge-xfr\n    algorithm: hmac-sha256\n    secret: {secret}\n"),
            format!("key \"edge-xfr\" {{\n secret \"{secret}\"; ; zone-file comment\n}};\n"),
            format!("; TSIG key for the edge\nkey \"edge-xfr\" {{\n secret \"{secret}\"; ; secret rotated monthly\n}};\n"),
        ] {
            let k = parse_key(&text, p).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(k.name(), "edge-xfr", "{text}");
            assert!(same(&k), "{text}: another secret");
        }
    }
}
