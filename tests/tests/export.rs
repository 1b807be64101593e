//! `blocker export --rpz` and `rules load --format rpz`: an order written as an RPZ zone and
//! loaded into another order gives the same rules (a subtree rule comes back as its exact and
//! below halves, which match the same names).

use blocker_tests::env::{Blocker, TempDir};

fn rules(b: &Blocker, order: &str) -> Vec<(String, String, String)> {
    let out = b.ok(&["rules", "list", "--order", order, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mut r: Vec<(String, String, String)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                r["match"].as_str().unwrap_or("").to_string(),
                r["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    r.sort();
    r
}

#[test]
fn export_and_reload_give_the_same_rules() {
    let b = Blocker::new();
    let dir = TempDir::new("blkt-export");
    b.ok(&["config", "set", "--sinkhole-v4", "192.0.2.99"]);
    for (name, action, flag) in [
        ("bad.example", "nxdomain", None),
        ("*.bad.example", "nodata", None),
        ("ok.bad.example", "pass", None),
        ("quiet.example", "drop", None),
        ("*.slow.example", "tc", None),
        ("sink.example", "sinkhole", None),
        ("court.example", "nxdomain", Some("--subtree")),
    ] {
        let mut args = vec!["rules", "add", name, "--action", action, "--order", "A"];
        args.extend(flag);
        b.ok(&args);
    }
    let file = dir.join("a.rpz");
    let f = file.to_str().expect("utf-8");
    b.ok(&["export", "--rpz", "A", "--zone", "rpz.example", "-o", f]);
    let text = std::fs::read_to_string(&file).expect("exported");
    assert!(
        text.contains("court.example CNAME .\n*.court.example CNAME .\n"),
        "{text}"
    );
    assert!(text.contains("sink.example A 192.0.2.99\n"), "{text}");
    b.ok(&["rules", "load", f, "--format", "rpz", "--order", "B"]);
    let want: Vec<(String, String, String)> = rules(&b, "A")
        .into_iter()
        .flat_map(|(n, k, a)| {
            if k == "subtree" {
                vec![
                    (n.clone(), "exact".into(), a.clone()),
                    (n, "below".into(), a),
                ]
            } else {
                vec![(n, k, a)]
            }
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(rules(&b, "B"), want);
    // B has no subtree rule: its export reads back to B exactly.
    let file2 = dir.join("b.rpz");
    let f2 = file2.to_str().expect("utf-8");
    b.ok(&["export", "--rpz", "B", "--zone", "rpz.example", "-o", f2]);
    b.ok(&["rules", "load", f2, "--format", "rpz", "--order", "C"]);
    assert_eq!(rules(&b, "C"), rules(&b, "B"));

    // REFUSED has no RPZ form: refused by name, nothing written; or skipped on request.
    b.ok(&[
        "rules",
        "add",
        "no.example",
        "--action",
        "refused",
        "--order",
        "A",
    ]);
    let err = b.fails(&["export", "--rpz", "A", "--zone", "rpz.example", "-o", f]);
    assert!(
        err.contains("1 rules cannot be written as RPZ") && err.contains("no.example"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("kept"),
        text,
        "nothing written"
    );
    let out = b.ok(&[
        "export",
        "--rpz",
        "A",
        "--zone",
        "rpz.example",
        "--skip-inexpressible",
    ]);
    assert!(out.contains("; skipped: exact no.example refused"), "{out}");
}
