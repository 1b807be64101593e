//! Guards against blocking too much by mistake: a block rule on a public suffix (`com`,
//! `co.uk`, `github.io` …) or on a name the operator protects is refused unless forced.
//!
//! - **Public suffixes** come from the Public Suffix List (<https://publicsuffix.org>), read
//!   by the `publicsuffix` crate from, in this order: `--psl FILE`, the state directory's
//!   `public_suffix_list.dat`, or the copy built into the binary (`data/public_suffix_list.dat`
//!   in the source tree). A block rule is refused when its name is a public suffix (the PSL
//!   algorithm: listed rules, wildcards and exceptions, and the implicit `*` that makes every
//!   top-level name a suffix), or when it is a subtree or below rule with a listed suffix
//!   under it (`amazonaws.com` holds `s3.amazonaws.com`, whose names belong to others).
//! - **Protected names** (`blocker protect add NAME`, kept in the state directory's
//!   `protected.txt`) protect the name and every name below it: a block rule is refused when
//!   it would block any of them, i.e. when its name is the protected name or below it (any
//!   match kind), or an ancestor of it with a subtree or below match (blocking `example.net`
//!   with a subtree rule would block the protected `portal.example.net`; an exact rule for
//!   `example.net` would not, and is accepted).
//!
//! Allow (`pass`) rules are never refused: they only let queries through.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use crate::error::{OpContext, OpError};

/// Why the guards could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A public suffix list or protected-names file that does not parse (the message names
    /// the file, and the line where there is one).
    #[error("{0}")]
    Invalid(String),
}

type Result<T, E = GuardError> = std::result::Result<T, E>;
use blocker_common::{Action, Kind};
use blocker_lists::Name;
use publicsuffix::Psl;

use crate::state::{Rule, StateDir};

/// The list built into the binary (updated by replacing `data/public_suffix_list.dat`).
const BUILT_IN_PSL: &str = include_str!("../../data/public_suffix_list.dat");

/// File name of an operator-supplied list in the state directory (overrides the built-in one).
pub const PSL_FILE: &str = "public_suffix_list.dat";
/// File name of the protected names in the state directory.
pub const PROTECTED_FILE: &str = "protected.txt";

/// Where the public suffix list came from.
#[derive(Clone, Debug)]
pub enum PslSource {
    BuiltIn,
    File(PathBuf),
}

impl std::fmt::Display for PslSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PslSource::BuiltIn => f.write_str("the built-in public suffix list"),
            PslSource::File(p) => write!(f, "the public suffix list {}", p.display()),
        }
    }
}

/// Names by their wire bytes (a rule's name and its parent are looked up without building
/// a name).
type NameSet = rustc_hash::FxHashSet<Box<[u8]>>;

/// Rules checked in two halves on two threads from this many on.
const PARALLEL_RULES: usize = 100_000;

pub struct Guards {
    psl: publicsuffix::List,
    pub psl_source: PslSource,
    /// The names of the list's rules (`*.` and `!` taken off): only these, and the names
    /// right below them, can be public suffixes — for a list whose wildcards are all a
    /// leading `*.` (the published list's are); None for another list: every name is
    /// looked up.
    listed: Option<NameSet>,
    /// Names with at least one listed suffix strictly below them.
    above_suffix: NameSet,
    pub protected: Vec<Name>,
}

impl Guards {
    /// The guards in force: the public suffix list (`psl` overrides the state directory's,
    /// which overrides the built-in one) and the protected names.
    pub fn load(dir: &StateDir, psl: Option<&Path>) -> Result<Guards> {
        let in_state = dir.dir.join(PSL_FILE);
        let (text, source) = match psl {
            Some(p) => (read_psl(p)?, PslSource::File(p.to_path_buf())),
            None if in_state.exists() => (read_psl(&in_state)?, PslSource::File(in_state)),
            None => (BUILT_IN_PSL.to_string(), PslSource::BuiltIn),
        };
        let list: publicsuffix::List = text.parse().map_err(|e| {
            GuardError::Invalid(format!("{source}: not a public suffix list ({e:?})"))
        })?;
        let mut above_suffix = NameSet::default();
        let mut listed = Some(NameSet::default());
        for line in text.lines() {
            let Some(rule) = line.split_whitespace().next() else {
                continue;
            };
            if rule.starts_with("//") {
                continue;
            }
            let rule = rule.trim_start_matches('!');
            let rule = rule.strip_prefix("*.").unwrap_or(rule);
            let Ok(mut name) = blocker_lists::normalize_name(rule) else {
                // A wildcard inside the rule (`*.*.x`, `a.*.x`) or a rule that is not a
                // host name: this list gets the lookup for every name.
                listed = None;
                continue;
            };
            if let Some(l) = listed.as_mut() {
                l.insert(name.canonical().into());
            }
            while let Some(parent) = name.parent() {
                above_suffix.insert(parent.canonical().into());
                name = parent;
            }
        }
        Ok(Guards {
            psl: list,
            psl_source: source,
            listed,
            above_suffix,
            protected: read_protected(dir)?,
        })
    }

    /// Whether `name` is a public suffix (a top-level name always is).
    pub fn is_public_suffix(&self, name: &Name) -> bool {
        if name.label_count() <= 1 {
            return true;
        }
        // A name is its own suffix only if a rule names it, or a wildcard rule its parent
        // (`*.ck`): the other names (nearly all a list holds) need no lookup.
        if let Some(listed) = &self.listed {
            let named = listed.contains(name.canonical())
                || name.parent_canonical().is_some_and(|p| listed.contains(p));
            if !named {
                return false;
            }
        }
        let text = name.to_string();
        self.psl
            .suffix(text.as_bytes())
            .is_some_and(|s| s.is_known() && s.as_bytes() == text.as_bytes())
    }

    /// Why a rule at `name` of match `kind` and action `action` is refused (None: accepted).
    pub fn refusal(&self, name: &Name, kind: Kind, action: Action) -> Option<String> {
        if action == Action::Pass {
            return None;
        }
        if self.is_public_suffix(name) {
            let what = match kind {
                Kind::Exact => {
                    "an exact block rule there is more likely a list's mistake than an order \
                     (it blocks the suffix's own name; the same entry read as a subtree would \
                     block every name registered under it)"
                }
                Kind::Subtree | Kind::Below => {
                    "a block rule there blocks every name registered under it"
                }
            };
            return Some(format!(
                "{name} is a public suffix ({}): {what}",
                self.psl_source
            ));
        }
        let reaches_below = matches!(kind, Kind::Subtree | Kind::Below);
        if reaches_below && self.above_suffix.contains(name.canonical()) {
            return Some(format!(
                "{name} has public suffixes below it ({}): a {} rule blocks every name \
                 registered under them",
                self.psl_source,
                kind.as_str()
            ));
        }
        for p in &self.protected {
            if blocks_protected(name, kind, p) {
                return Some(format!(
                    "{name} ({} rule) would block the protected name {p} (`blocker protect \
                     list`)",
                    kind.as_str()
                ));
            }
        }
        None
    }

    /// Every rule of `rules` the guards refuse, with its source and the reason, in order,
    /// judged by the action each takes in force: `over`, the order's policy override, when it
    /// has one (an override makes every rule of the order, pass rules included, take its
    /// action), else the rule's own. A large list is checked in two halves on two threads.
    pub fn refusals<'a>(&self, rules: &'a [Rule], over: Option<Action>) -> Vec<(&'a Rule, String)> {
        crate::in_two_halves(rules, PARALLEL_RULES, |rules: &'a [Rule]| {
            rules
                .iter()
                .filter_map(|r| {
                    let action = over.unwrap_or(r.action);
                    let why = self.refusal(&r.name, r.kind, action)?;
                    Some(match over {
                        Some(o) if o != r.action => (
                            r,
                            format!(
                                "{why} (the order's policy override makes its {} rule {})",
                                r.action.as_str(),
                                o.as_str()
                            ),
                        ),
                        _ => (r, why),
                    })
                })
                .collect()
        })
    }
}

/// Whether a block rule at `name` of match `kind` blocks the protected name `p` or a name
/// below it.
pub fn blocks_protected(name: &Name, kind: Kind, p: &Name) -> bool {
    name.ends_with(p) || (matches!(kind, Kind::Subtree | Kind::Below) && p.ends_with(name))
}

fn read_psl(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path)
        .op(|| format!("reading the public suffix list {}", path.display()))?)
}

/// The protected names recorded in the state directory (none when it has no list).
pub fn read_protected(dir: &StateDir) -> Result<Vec<Name>> {
    let path = dir.dir.join(PROTECTED_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(OpError {
                context: format!("reading {}", path.display()),
                source: Box::new(e),
            }
            .into())
        }
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // As `write_protected` writes them (escaped where a label holds such bytes).
        match Name::from_text(line) {
            Ok(n) => out.push(n),
            Err(e) => {
                return Err(GuardError::Invalid(format!(
                    "{}:{}: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

/// Replaces the protected names (write, fsync, rename).
pub fn write_protected(dir: &StateDir, names: &[Name]) -> Result<()> {
    dir.ensure()?;
    let path = dir.dir.join(PROTECTED_FILE);
    let tmp = dir.dir.join(format!("{PROTECTED_FILE}.new"));
    let mut f = fs::File::create(&tmp).op(|| format!("creating {}", tmp.display()))?;
    let mut text = String::from(
        "# Names blocker refuses to block (and every name below them); `blocker protect`.\n",
    );
    for n in names {
        text.push_str(&format!("{n}\n"));
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .op(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).op(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        blocker_lists::normalize_name(s).expect("name")
    }

    fn guards(protected: &[&str]) -> Guards {
        let dir = StateDir::new(std::env::temp_dir().join("blocker-guard-test-nonexistent"));
        let mut g = Guards::load(&dir, None).expect("built-in list");
        g.protected = protected.iter().map(|p| n(p)).collect();
        g
    }

    #[test]
    fn protected_names_read_back_as_written_escapes_included() {
        let dir = StateDir::new(
            std::env::temp_dir().join(format!("blocker-guard-protect-{}", std::process::id())),
        );
        let escaped = Name::from_text("has\\032space.example").expect("escaped");
        let names = vec![escaped, n("portal.example.net")];
        write_protected(&dir, &names).expect("write");
        let back = read_protected(&dir);
        let _ = fs::remove_dir_all(&dir.dir);
        assert_eq!(back.expect("read back"), names);
    }

    #[test]
    fn a_large_list_is_checked_whole_and_in_order() {
        // Refused names in both halves (two threads), each half's first and last rule among
        // them: every refusal is found, in the list's order.
        let g = guards(&["portal.example.net"]);
        let total = 2 * PARALLEL_RULES;
        let refused_at = [0, 5, total / 2 - 1, total / 2, total / 2 + 7, total - 1];
        let rules: Vec<Rule> = (0..total)
            .map(|i| {
                let name = match refused_at.iter().position(|&r| r == i) {
                    Some(k) if k % 2 == 0 => n(&format!("x{k}.portal.example.net")),
                    Some(_) => n("co.uk"),
                    None => n(&format!("site{i}.example")),
                };
                Rule::cli(name, Kind::Subtree, Action::Nxdomain)
            })
            .collect();
        let got: Vec<usize> = g
            .refusals(&rules, None)
            .iter()
            .map(|(r, _)| {
                rules
                    .iter()
                    .position(|x| std::ptr::eq(x, *r))
                    .unwrap_or(usize::MAX)
            })
            .collect();
        assert_eq!(got, refused_at);
    }

    #[test]
    fn a_policy_override_is_judged_as_the_action_in_force() {
        let g = guards(&[]);
        let rules = [Rule::cli(n("co.uk"), Kind::Subtree, Action::Pass)];
        assert!(g.refusals(&rules, None).is_empty());
        assert!(g.refusals(&rules, Some(Action::Pass)).is_empty());
        let r = g.refusals(&rules, Some(Action::Drop));
        assert_eq!(r.len(), 1);
        assert!(
            r[0].1.contains("policy override makes its pass rule drop"),
            "{}",
            r[0].1
        );
        // A block rule overridden by pass blocks nothing.
        let rules = [Rule::cli(n("co.uk"), Kind::Subtree, Action::Nxdomain)];
        assert!(g.refusals(&rules, Some(Action::Pass)).is_empty());
    }

    #[test]
    fn public_suffixes_are_refused_for_blocks_only() {
        let g = guards(&[]);
        for s in ["com", "co.uk", "github.io", "lan", "s3.amazonaws.com"] {
            assert!(
                g.refusal(&n(s), Kind::Exact, Action::Nxdomain).is_some(),
                "{s}"
            );
            assert!(
                g.refusal(&n(s), Kind::Subtree, Action::Pass).is_none(),
                "{s}"
            );
        }
        for s in ["example.com", "bbc.co.uk", "user.github.io"] {
            assert!(
                g.refusal(&n(s), Kind::Subtree, Action::Drop).is_none(),
                "{s}"
            );
        }
        // A private suffix below: the subtree is refused, the name alone is not.
        assert!(g
            .refusal(&n("amazonaws.com"), Kind::Subtree, Action::Drop)
            .is_some());
        assert!(g
            .refusal(&n("amazonaws.com"), Kind::Exact, Action::Drop)
            .is_none());
        // Wildcard rules and their exceptions: `*.ck` and `!www.ck`.
        assert!(g.is_public_suffix(&n("foo.ck")));
        assert!(!g.is_public_suffix(&n("www.ck")));
        assert!(!g.is_public_suffix(&n("a.foo.ck")));
        assert!(g.is_public_suffix(&n("x.kawasaki.jp")));
        assert!(!g.is_public_suffix(&n("city.kawasaki.jp")));
        assert!(!g.is_public_suffix(&n("example.com")));
        assert!(g.is_public_suffix(&n("com")) && g.is_public_suffix(&n("co.uk")));
        // Above a wildcard: a subtree rule at `ck` or `kawasaki.jp` reaches suffixes.
        assert!(g
            .refusal(&n("kawasaki.jp"), Kind::Subtree, Action::Drop)
            .is_some());
    }

    /// The published list takes the shortcut; a list with a wildcard inside a rule gets the
    /// lookup for every name, as the suffix list library reads it.
    #[test]
    fn a_list_with_inner_wildcards_is_looked_up_for_every_name() {
        assert!(guards(&[]).listed.is_some(), "the built-in list");
        let dir = std::env::temp_dir().join(format!("blk-psl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let psl = dir.join("psl.dat");
        std::fs::write(
            &psl,
            "// ===BEGIN ICANN DOMAINS===\nx\n*.*.x\n// ===END ICANN DOMAINS===\n",
        )
        .expect("write");
        let g = Guards::load(&StateDir::new(&dir), Some(&psl)).expect("a list");
        assert!(g.listed.is_none());
        let two_below = g.is_public_suffix(&n("a.b.x"));
        std::fs::remove_dir_all(&dir).ok();
        assert!(two_below, "*.*.x makes a.b.x a suffix");
    }

    #[test]
    fn protected_names_cover_their_subtree_and_ancestors_that_reach_them() {
        let g = guards(&["portal.example.net"]);
        let r = |s: &str, k| g.refusal(&n(s), k, Action::Nxdomain).is_some();
        assert!(r("portal.example.net", Kind::Exact));
        assert!(r("a.portal.example.net", Kind::Exact));
        assert!(r("example.net", Kind::Subtree));
        assert!(r("example.net", Kind::Below));
        assert!(!r("example.net", Kind::Exact));
        assert!(!r("other.example.net", Kind::Subtree));
    }
}
