//! A followed zone as last applied: its SOA and its records, changed by IXFR diffs (with an
//! undo log, so a diff that cannot be applied or enforced leaves the copy as it was), kept on
//! disk as a zone file of one record per line.
//!
//! Records are kept in a fixed order (owner labels from the top, lower case; then type; then
//! canonical record data), whatever order a transfer delivered them in: the same zone content
//! gives the same file, the same line numbers and — where an owner holds two policies, which
//! a primary should not serve — the same winner, after an AXFR or any chain of IXFRs.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use blocker_lists::{Options, ParseOutcome, ZoneRecord};
use bytes::Bytes;
use domain::{
    base::{
        iana::Class,
        name::{FlattenInto, ToLabelIter},
        rdata::ComposeRecordData,
        zonefile_fmt::{DisplayKind, ZonefileFmt},
        Name as DName, ToName,
    },
    rdata::{Soa, ZoneRecordData},
    zonefile::inplace::{Entry, Zonefile},
};

/// After this many IXFRs in its journal a saved copy is written whole again.
pub const MAX_JOURNAL: usize = 16;

/// Comment lines at the top of a saved zone (the SOA is on the next line).
pub const HEADER_LINES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("the IXFR deletes {record}, which the copy at serial {serial} does not hold")]
    Missing { record: String, serial: u32 },
    #[error("the IXFR starts from serial {got}, but the copy enforced is serial {have}")]
    WrongStart { got: u32, have: u32 },
    #[error("{path}:{line}: {why}", path = path.display())]
    File {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

/// One IXFR difference sequence: the zone at `from` becomes the zone at `to` by deleting
/// `deletes` and adding `adds`.
#[derive(Clone, Debug)]
pub struct Batch {
    pub from: ZoneRecord,
    pub to: ZoneRecord,
    pub deletes: Vec<ZoneRecord>,
    pub adds: Vec<ZoneRecord>,
}

/// What is wrong with an IXFR's difference sequences as a way from serial `have` to the
/// closing SOA's serial `end` (None: nothing): none at all (`SOA(n) SOA(n)` is a whole zone
/// holding only its SOA, not "no change"), a sequence that does not move forward (RFC 1982),
/// or one that ends elsewhere than the closing SOA. Where each starts is checked as it is
/// applied ([`Zone::apply`]).
pub fn sequence_error(have: u32, batches: &[Batch], end: u32) -> Option<String> {
    let Some(last) = batches.last() else {
        return Some(format!(
            "holds no difference sequence (closing serial {end})"
        ));
    };
    if !super::serial_newer(end, have) {
        return Some(format!(
            "ends at serial {end}, not newer than ours ({have})"
        ));
    }
    for b in batches {
        let (from, to) = (serial_of(&b.from), serial_of(&b.to));
        if !super::serial_newer(to, from) {
            return Some(format!(
                "has a difference sequence from {from} to {to}, not forward"
            ));
        }
    }
    let to = serial_of(&last.to);
    (to != end).then(|| format!("ends its differences at serial {to}, its closing SOA at {end}"))
}

/// How to take back an applied diff.
#[derive(Debug)]
pub struct Undo {
    soa: ZoneRecord,
    /// (key, what the key held before), in the order applied.
    ops: Vec<(Vec<u8>, Option<ZoneRecord>)>,
}

/// A zone's content.
#[derive(Clone, Debug)]
pub struct Zone {
    apex: DName<Bytes>,
    soa: ZoneRecord,
    records: BTreeMap<Vec<u8>, ZoneRecord>,
}

/// The SOA data of a record known to be a SOA.
pub fn soa_of(r: &ZoneRecord) -> Option<&Soa<DName<Bytes>>> {
    match r.data() {
        ZoneRecordData::Soa(s) => Some(s),
        _ => None,
    }
}

/// The serial of a SOA record (0 for anything else).
pub fn serial_of(r: &ZoneRecord) -> u32 {
    soa_of(r).map_or(0, |s| s.serial().into_int())
}

/// The sort key (and identity) of a record: owner labels from the top, lower case and
/// length-prefixed, then type and canonical record data. The TTL is not part of it: an IXFR
/// deletes a record by owner, type, class and data.
fn key_of(r: &ZoneRecord) -> Vec<u8> {
    let mut k = owner_key(r);
    k.extend(r.rtype().to_int().to_be_bytes());
    // Appending to a Vec cannot fail.
    let _ = r.data().compose_canonical_rdata(&mut k);
    k
}

/// The part of [`key_of`] that is the owner (every record of an owner has it as a prefix).
pub fn owner_key(r: &ZoneRecord) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    let labels: Vec<_> = r.owner().iter_labels().filter(|l| !l.is_root()).collect();
    for l in labels.iter().rev() {
        k.push(l.len() as u8);
        k.extend(l.as_slice().iter().map(u8::to_ascii_lowercase));
    }
    // Below any label length (at least 1): the owner ends here, and sorts before the names
    // below it.
    k.push(0);
    k
}

/// The policy CNAME targets whose meaning depends on nothing else in the zone.
const PLAIN_TARGETS: [&str; 5] = [".", "*.", "rpz-passthru.", "rpz-drop.", "rpz-tcp-only."];

/// A record for messages (`owner TTL IN TYPE data`).
pub fn show(r: &ZoneRecord) -> String {
    r.display_zonefile(DisplayKind::Simple).to_string()
}

impl Zone {
    /// A zone from its SOA and records (SOA records among them are ignored).
    pub fn new(
        apex: DName<Bytes>,
        soa: ZoneRecord,
        records: impl IntoIterator<Item = ZoneRecord>,
    ) -> Zone {
        let records = records
            .into_iter()
            .filter(|r| soa_of(r).is_none())
            .map(|r| (key_of(&r), r))
            .collect();
        Zone { apex, soa, records }
    }

    pub fn apex(&self) -> &DName<Bytes> {
        &self.apex
    }

    pub fn soa(&self) -> &ZoneRecord {
        &self.soa
    }

    pub fn serial(&self) -> u32 {
        serial_of(&self.soa)
    }

    /// (refresh, retry, expire) of the SOA, in seconds.
    pub fn timers(&self) -> (u32, u32, u32) {
        soa_of(&self.soa).map_or((3600, 600, 604800), |s| {
            (
                s.refresh().as_secs(),
                s.retry().as_secs(),
                s.expire().as_secs(),
            )
        })
    }

    /// Records, the SOA included.
    pub fn len(&self) -> usize {
        self.records.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Applies IXFR difference sequences in order. On an error nothing is changed.
    pub fn apply(&mut self, batches: &[Batch]) -> Result<Undo, ZoneError> {
        let mut undo = Undo {
            soa: self.soa.clone(),
            ops: Vec::new(),
        };
        match self.apply_into(batches, &mut undo) {
            Ok(()) => Ok(undo),
            Err(e) => {
                self.undo(undo);
                Err(e)
            }
        }
    }

    fn apply_into(&mut self, batches: &[Batch], undo: &mut Undo) -> Result<(), ZoneError> {
        for b in batches {
            let from = serial_of(&b.from);
            if from != self.serial() {
                return Err(ZoneError::WrongStart {
                    got: from,
                    have: self.serial(),
                });
            }
            for d in &b.deletes {
                let k = key_of(d);
                match self.records.remove(&k) {
                    Some(old) => undo.ops.push((k, Some(old))),
                    None => {
                        return Err(ZoneError::Missing {
                            record: show(d),
                            serial: self.serial(),
                        })
                    }
                }
            }
            for a in &b.adds {
                if soa_of(a).is_some() {
                    continue;
                }
                let k = key_of(a);
                let old = self.records.insert(k.clone(), a.clone());
                undo.ops.push((k, old));
            }
            self.soa = b.to.clone();
        }
        Ok(())
    }

    /// Takes back a diff applied by [`Zone::apply`] (the last one applied).
    pub fn undo(&mut self, u: Undo) {
        for (k, old) in u.ops.into_iter().rev() {
            match old {
                Some(r) => {
                    self.records.insert(k, r);
                }
                None => {
                    self.records.remove(&k);
                }
            }
        }
        self.soa = u.soa;
    }

    /// Every record with its line in the saved file (the SOA first).
    pub fn lines(&self) -> impl Iterator<Item = (usize, ZoneRecord)> + '_ {
        std::iter::once((HEADER_LINES + 1, self.soa.clone())).chain(
            self.records
                .values()
                .enumerate()
                .map(|(i, r)| (HEADER_LINES + 2 + i, r.clone())),
        )
    }

    /// The zone read as RPZ, as `rules load --format rpz` reads a zone file; diagnostics
    /// name `file` (the saved zone) and the record's line in it.
    pub fn rpz(&self, file: &Path) -> ParseOutcome {
        let opts = Options {
            rpz_origin: Some(self.apex.to_string()),
            ..Options::default()
        };
        blocker_lists::parse_rpz_records(self.lines(), file, &opts)
    }

    /// The owners (see [`owner_key`]) the records of `batches` belong to, each once.
    pub fn owners_of(batches: &[Batch]) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = batches
            .iter()
            .flat_map(|b| b.deletes.iter().chain(&b.adds))
            // (A signed zone re-signs its apex SOA at every serial: its RRSIG is no owner's
            // policy.)
            .filter(|r| soa_of(r).is_none() && !blocker_lists::is_dnssec(r.data()))
            .map(owner_key)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The records of `owners` read as RPZ, as [`Zone::rpz`] reads them within the whole zone
    /// — or None when that reading could depend on other owners or fail: an owner that is
    /// the apex, a record other than a CNAME to one of the plain policy targets (`.`, `*.`,
    /// `rpz-passthru.`, `rpz-drop.`, `rpz-tcp-only.`; a CNAME elsewhere may name a block page
    /// whose addresses other owners give, A and AAAA records may be such a page), or a
    /// record the reading refuses.
    pub fn rpz_owners(&self, owners: &[Vec<u8>], file: &Path) -> Option<ParseOutcome> {
        let apex = owner_key(&self.soa);
        let mut records = vec![(0usize, self.soa.clone())];
        for o in owners {
            if *o == apex {
                return None;
            }
            for (_, r) in self
                .records
                .range(o.clone()..)
                .take_while(|(k, _)| k.starts_with(o))
            {
                // A signed zone's records at every owner: no policy reads them.
                if blocker_lists::is_dnssec(r.data()) {
                    continue;
                }
                let ZoneRecordData::Cname(c) = r.data() else {
                    return None;
                };
                let target = c.cname().to_string().to_ascii_lowercase();
                let target = if target.ends_with('.') {
                    target
                } else {
                    format!("{target}.")
                };
                if !PLAIN_TARGETS.contains(&target.as_str()) {
                    return None;
                }
                records.push((0, r.clone()));
            }
        }
        let opts = Options {
            rpz_origin: Some(self.apex.to_string()),
            ..Options::default()
        };
        let out = blocker_lists::parse_rpz_records(records, file, &opts);
        out.errors.is_empty().then_some(out)
    }

    /// IXFR difference sequences as zone file text: for each, the SOA it starts from, the
    /// records it deletes, the SOA it ends at, the records it adds (RFC 1995's order). Read
    /// back by [`Zone::load`] from the copy's journal.
    pub fn render_batches(batches: &[Batch]) -> String {
        let mut s = String::new();
        for b in batches {
            for r in std::iter::once(&b.from)
                .chain(&b.deletes)
                .chain(std::iter::once(&b.to))
                .chain(&b.adds)
            {
                s.push_str(&show(r));
                s.push('\n');
            }
        }
        s
    }

    /// The zone as a file: `HEADER_LINES` comment lines (`header` must have as many), then
    /// one record per line.
    pub fn render(&self, header: &[String; HEADER_LINES]) -> String {
        let mut s = String::with_capacity(self.len() * 48);
        for h in header {
            s.push_str("; ");
            s.push_str(&h.replace('\n', " "));
            s.push('\n');
        }
        for (_, r) in self.lines() {
            s.push_str(&show(&r));
            s.push('\n');
        }
        s
    }

    /// The journal of a saved copy: the IXFR differences applied since the copy was
    /// written whole, one file each, in order.
    pub fn journal_dir(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}.ixfr", path.display()))
    }

    /// Reads a zone saved by [`Zone::render`] and brings it forward by the differences of
    /// its journal ([`Zone::journal_dir`]) that follow on from it (any other — left by a
    /// crash before the journal was cleared — is skipped).
    pub fn load(path: &Path, apex: &str) -> Result<Zone, ZoneError> {
        let mut z = Zone::load_file(path, apex)?;
        let dir = Zone::journal_dir(path);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            // `NNNNNNNN.SERIAL`, SERIAL the one its differences end at; anything else (a
            // `.tmp` a crash left while one was being written) is not an entry.
            let Some(to) = f
                .extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse::<u32>().ok())
            else {
                continue;
            };
            let batches = match Zone::read_batches(&f, apex) {
                Ok(b) => b,
                Err(e) => {
                    log::warn!("{}: skipped ({e})", f.display());
                    continue;
                }
            };
            if batches.last().map(|b| serial_of(&b.to)) != Some(to) {
                log::warn!(
                    "{}: skipped (its differences do not end at serial {to})",
                    f.display()
                );
                continue;
            }
            if batches
                .first()
                .is_some_and(|b| serial_of(&b.from) == z.serial())
            {
                z.apply(&batches)?;
            }
        }
        Ok(z)
    }

    /// Files in the journal of the copy saved at `path`.
    pub fn journal_len(path: &Path) -> usize {
        fs::read_dir(Zone::journal_dir(path)).map_or(0, |d| d.count())
    }

    /// Reads the difference sequences of a journal file ([`Zone::render_batches`]).
    fn read_batches(path: &Path, apex: &str) -> Result<Vec<Batch>, ZoneError> {
        let records = read_records(path, apex, 0)?;
        let mut out: Vec<Batch> = Vec::new();
        // SOAs alternate: the start of a sequence's deletions, then of its additions.
        let mut adding = true;
        for r in records {
            if soa_of(&r).is_some() {
                if adding {
                    out.push(Batch {
                        from: r.clone(),
                        to: r,
                        deletes: Vec::new(),
                        adds: Vec::new(),
                    });
                } else if let Some(b) = out.last_mut() {
                    b.to = r;
                }
                adding = !adding;
                continue;
            }
            let Some(b) = out.last_mut() else {
                return Err(ZoneError::File {
                    path: path.to_path_buf(),
                    line: 1,
                    why: "a journal that does not start with a SOA".into(),
                });
            };
            if adding {
                b.adds.push(r);
            } else {
                b.deletes.push(r);
            }
        }
        Ok(out)
    }

    /// Reads a zone file written by [`Zone::render`] (the SOA of `apex` first).
    fn load_file(path: &Path, apex: &str) -> Result<Zone, ZoneError> {
        let err = |line: usize, why: String| ZoneError::File {
            path: path.to_path_buf(),
            line,
            why,
        };
        let origin = origin_of(path, apex)?;
        let mut records = read_records(path, apex, HEADER_LINES)?.into_iter();
        let soa = match records.next() {
            Some(r) if soa_of(&r).is_some() && r.owner().name_cmp(&origin).is_eq() => r,
            Some(_) => {
                return Err(err(
                    HEADER_LINES + 1,
                    format!("the first record is not the SOA of {apex}"),
                ))
            }
            None => return Err(err(HEADER_LINES + 1, "no SOA record".into())),
        };
        Ok(Zone::new(origin, soa, records))
    }
}

fn origin_of(path: &Path, apex: &str) -> Result<DName<Bytes>, ZoneError> {
    DName::<Bytes>::from_str(&format!("{}.", apex.trim_end_matches('.'))).map_err(|e| {
        ZoneError::File {
            path: path.to_path_buf(),
            line: 0,
            why: format!("zone name {apex:?}: {e}"),
        }
    })
}

/// The records of a file of one record per line after `skip` comment lines (a saved copy,
/// a journal file).
fn read_records(path: &Path, apex: &str, skip: usize) -> Result<Vec<ZoneRecord>, ZoneError> {
    let err = |line: usize, why: String| ZoneError::File {
        path: path.to_path_buf(),
        line,
        why,
    };
    let text = fs::read(path).map_err(|e| err(0, e.to_string()))?;
    let mut zf = Zonefile::new();
    zf.set_origin(origin_of(path, apex)?);
    zf.set_default_class(Class::IN);
    zf.extend_from_slice(&text);
    let mut records = Vec::new();
    loop {
        let line = skip + 1 + records.len();
        let entry = match zf.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(err(line, e.to_string())),
        };
        let Entry::Record(rec) = entry else {
            return Err(err(line, "a directive in a saved zone".into()));
        };
        let rec: ZoneRecord = rec
            .try_flatten_into()
            .map_err(|_| err(line, "a name too long".into()))?;
        records.push(rec);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{
        base::{Record, Serial, Ttl},
        rdata::{Cname, A},
    };
    use std::net::Ipv4Addr;

    fn n(s: &str) -> DName<Bytes> {
        DName::from_str(s).expect("name")
    }

    fn soa(serial: u32) -> ZoneRecord {
        Record::new(
            n("rpz.test."),
            Class::IN,
            Ttl::from_secs(60),
            ZoneRecordData::Soa(Soa::new(
                n("ns.rpz.test."),
                n("admin.rpz.test."),
                Serial(serial),
                Ttl::from_secs(30),
                Ttl::from_secs(10),
                Ttl::from_secs(600),
                Ttl::from_secs(60),
            )),
        )
    }

    fn batch(from: u32, to: u32) -> Batch {
        Batch {
            from: soa(from),
            to: soa(to),
            deletes: Vec::new(),
            adds: Vec::new(),
        }
    }

    #[test]
    fn difference_sequences_must_lead_forward_to_the_closing_serial() {
        assert_eq!(sequence_error(5, &[batch(5, 6), batch(6, 7)], 7), None);
        // Across the wrap of serial arithmetic.
        assert_eq!(sequence_error(u32::MAX, &[batch(u32::MAX, 1)], 1), None);
        for (have, batches, end, want) in [
            (5, vec![], 5, "holds no difference sequence"),
            (5, vec![batch(5, 5)], 5, "not newer than ours"),
            (5, vec![batch(5, 3)], 3, "not newer than ours"),
            (
                5,
                vec![batch(5, 7), batch(7, 6)],
                8,
                "from 7 to 6, not forward",
            ),
            (
                5,
                vec![batch(5, 6)],
                7,
                "ends its differences at serial 6, its closing SOA at 7",
            ),
        ] {
            let e = sequence_error(have, &batches, end).expect("an error");
            assert!(e.contains(want), "{e}");
        }
    }

    fn cname(owner: &str, target: &str) -> ZoneRecord {
        Record::new(
            n(owner),
            Class::IN,
            Ttl::from_secs(60),
            ZoneRecordData::Cname(Cname::new(n(target))),
        )
    }

    fn a(owner: &str, ttl: u32) -> ZoneRecord {
        Record::new(
            n(owner),
            Class::IN,
            Ttl::from_secs(ttl),
            ZoneRecordData::A(A::new(Ipv4Addr::new(192, 0, 2, 1))),
        )
    }

    fn owners(z: &Zone) -> Vec<String> {
        z.lines().map(|(_, r)| r.owner().to_string()).collect()
    }

    #[test]
    fn diffs_apply_in_order_and_undo_exactly() {
        let mut z = Zone::new(
            n("rpz.test."),
            soa(1),
            vec![
                cname("b.example.rpz.test.", "."),
                cname("A.example.rpz.test.", "."),
            ],
        );
        // Fixed order whatever the input order (case folded for the order only).
        assert_eq!(
            owners(&z),
            ["rpz.test", "A.example.rpz.test", "b.example.rpz.test"]
        );
        let batches = [
            Batch {
                from: soa(1),
                to: soa(2),
                deletes: vec![cname("a.example.rpz.test.", ".")],
                adds: vec![a("c.example.rpz.test.", 60)],
            },
            Batch {
                from: soa(2),
                to: soa(3),
                // The TTL is not part of a record's identity.
                deletes: vec![a("c.example.rpz.test.", 300)],
                adds: vec![cname("d.example.rpz.test.", "*.")],
            },
        ];
        let before = z.render(&["x".into(), "y".into()]);
        let undo = z.apply(&batches).expect("apply");
        assert_eq!(z.serial(), 3);
        assert_eq!(
            owners(&z),
            ["rpz.test", "b.example.rpz.test", "d.example.rpz.test"]
        );
        z.undo(undo);
        assert_eq!(z.render(&["x".into(), "y".into()]), before);

        // A diff from another serial, or deleting what is not there, changes nothing.
        let e = z.apply(&batches[1..]).expect_err("wrong start");
        assert_eq!(
            e.to_string(),
            "the IXFR starts from serial 2, but the copy enforced is serial 1"
        );
        let bad = [Batch {
            from: soa(1),
            to: soa(2),
            deletes: vec![
                cname("b.example.rpz.test.", "."),
                cname("zz.example.rpz.test.", "."),
            ],
            adds: vec![],
        }];
        let e = z.apply(&bad).expect_err("missing");
        assert!(e.to_string().contains("zz.example.rpz.test."), "{e}");
        assert_eq!(z.render(&["x".into(), "y".into()]), before);
    }

    #[test]
    fn saved_zones_read_back_with_the_same_lines() {
        let dir = std::env::temp_dir().join(format!("blk-zone-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rpz.test.zone");
        let z = Zone::new(
            n("rpz.test."),
            soa(7),
            vec![
                cname("bad.example.rpz.test.", "."),
                cname("*.bad.example.rpz.test.", "*."),
                a("sink.example.rpz.test.", 60),
            ],
        );
        let text = z.render(&["header one".into(), "header two".into()]);
        fs::write(&path, &text).expect("write");
        let back = Zone::load(&path, "rpz.test").expect("load");
        assert_eq!(back.serial(), 7);
        assert_eq!(
            back.render(&["header one".into(), "header two".into()]),
            text
        );
        // Each record's line is its line in the file.
        for (line, r) in back.lines() {
            assert_eq!(text.lines().nth(line - 1), Some(show(&r).as_str()));
        }
        let out = back.rpz(&path);
        let rules: Vec<String> = out
            .rules
            .iter()
            .map(|r| format!("{} {} {:?} {}", r.name, r.kind.as_str(), r.action, r.line))
            .collect();
        assert_eq!(
            rules,
            [
                "bad.example exact Some(Nxdomain) 4",
                "bad.example below Some(Nodata) 5",
                "sink.example exact Some(Sinkhole) 6"
            ]
        );
        fs::write(&path, text.replace("SOA", "NS")).expect("write");
        assert!(Zone::load(&path, "rpz.test").is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_journal_brings_a_saved_copy_forward() {
        let dir = std::env::temp_dir().join(format!("blk-journal-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rpz.test.zone");
        let mut z = Zone::new(
            n("rpz.test."),
            soa(1),
            vec![
                cname("a.example.rpz.test.", "."),
                cname("b.example.rpz.test.", "."),
            ],
        );
        let header: [String; HEADER_LINES] = ["h1".into(), "h2".into()];
        fs::write(&path, z.render(&header)).expect("write");
        let steps = [
            vec![Batch {
                from: soa(1),
                to: soa(2),
                deletes: vec![cname("a.example.rpz.test.", ".")],
                adds: vec![cname("c.example.rpz.test.", "*.")],
            }],
            vec![
                Batch {
                    from: soa(2),
                    to: soa(3),
                    deletes: vec![],
                    adds: vec![cname("d.example.rpz.test.", "rpz-drop.")],
                },
                Batch {
                    from: soa(3),
                    to: soa(4),
                    deletes: vec![cname("b.example.rpz.test.", ".")],
                    adds: vec![],
                },
            ],
        ];
        let jdir = Zone::journal_dir(&path);
        fs::create_dir_all(&jdir).expect("journal dir");
        for (i, b) in steps.iter().enumerate() {
            z.apply(b).expect("apply");
            let to = serial_of(&b[b.len() - 1].to);
            let f = jdir.join(format!("{:08}.{to}", i + 1));
            fs::write(f, Zone::render_batches(b)).expect("j");
        }
        // A file being written when a crash came (`write_atomic`'s staging name), holding
        // the first lines of the next step only, is no entry: it is skipped.
        let next = Zone::render_batches(&[Batch {
            from: soa(4),
            to: soa(5),
            deletes: vec![cname("c.example.rpz.test.", "*.")],
            adds: vec![cname("e.example.rpz.test.", ".")],
        }]);
        let cut: String = next.lines().take(3).map(|l| format!("{l}\n")).collect();
        fs::write(jdir.join("00000003.tmp"), cut).expect("tmp");
        // A journal file that does not follow on (left by a crash) is skipped.
        fs::write(
            jdir.join("00000000.10"),
            Zone::render_batches(&[Batch {
                from: soa(9),
                to: soa(10),
                deletes: vec![],
                adds: vec![cname("zz.example.rpz.test.", ".")],
            }]),
        )
        .expect("stale");
        assert_eq!(Zone::journal_len(&path), 4);
        let back = Zone::load(&path, "rpz.test").expect("load");
        assert_eq!(back.serial(), 4);
        assert_eq!(back.render(&header), z.render(&header));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn owners_read_alone_only_when_nothing_else_decides_them() {
        let path = Path::new("rpz.test.zone");
        let z = Zone::new(
            n("rpz.test."),
            soa(1),
            vec![
                cname("a.example.rpz.test.", "."),
                cname("*.a.example.rpz.test.", "*."),
                cname("page.example.rpz.test.", "block.page.example."),
                a("sink.example.rpz.test.", 60),
            ],
        );
        let key = |s: &str| owner_key(&cname(s, "."));
        let out = z
            .rpz_owners(
                &[key("a.example.rpz.test."), key("*.a.example.rpz.test.")],
                path,
            )
            .expect("plain policies");
        let rules: Vec<String> = out
            .rules
            .iter()
            .map(|r| format!("{} {} {:?}", r.name, r.kind.as_str(), r.action))
            .collect();
        assert_eq!(
            rules,
            [
                "a.example exact Some(Nxdomain)",
                "a.example below Some(Nodata)"
            ]
        );
        // A CNAME elsewhere (a block page), local data, the apex: the whole zone decides.
        assert!(z
            .rpz_owners(&[key("page.example.rpz.test.")], path)
            .is_none());
        assert!(z
            .rpz_owners(&[key("sink.example.rpz.test.")], path)
            .is_none());
        assert!(z.rpz_owners(&[key("rpz.test.")], path).is_none());
        // An owner with no records left gives no rules.
        let out = z
            .rpz_owners(&[key("gone.example.rpz.test.")], path)
            .expect("nothing");
        assert!(out.rules.is_empty());
    }
}
