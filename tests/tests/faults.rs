//! Faults: the controller killed with SIGKILL in the middle of replacing a large order. The
//! data plane must enforce either the whole old set or the whole new set, never a mixture;
//! the next command must recover (finish or roll back) and leave kernel and records agreeing.

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use blocker_tests::env::{kdig, Blocker, Topology, EDGE_V4};

const N: usize = 100_000;

fn blocked(t: &Topology, name: &str) -> bool {
    let r = kdig(&t.client, EDGE_V4, name, "A", &["+retry=0", "+timeout=2"]);
    match r.status.as_deref() {
        Some("NXDOMAIN") => true,
        Some("NOERROR") => false,
        other => panic!("{name}: unexpected {other:?}: {}", r.raw),
    }
}

fn generation(b: &Blocker) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&b.ok(&["status", "--json"])).expect("json");
    v["kernel_generation"].as_u64().expect("kernel generation")
}

#[test]
fn sigkill_during_a_large_load_leaves_old_or_new_whole() {
    let mut t = Topology::new();
    let probes = [
        "stable.test",
        "n7.old.test",
        "n99999.old.test",
        "n7.new.test",
        "n99999.new.test",
    ];
    let data: Vec<String> = probes
        .iter()
        .map(|n| format!("{n}. 300 IN A 192.0.2.10"))
        .collect();
    let refs: Vec<&str> = data.iter().map(String::as_str).collect();
    t.start_unbound(&refs);
    let b = Blocker::new();
    t.attach(&b, "native");
    let dir = blocker_tests::env::TempDir::new("blkt-faults");
    let write = |name: &str, tag: &str| {
        let text: String = std::iter::once("stable.test\n".to_string())
            .chain((0..N).map(|i| format!("n{i}.{tag}.test\n")))
            .collect();
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let (old, new) = (write("old.txt", "old"), write("new.txt", "new"));

    // How long a full replacement takes, to aim the kills.
    b.ok(&["rules", "load", &old, "--order", "big", "--match", "exact"]);
    let t0 = Instant::now();
    b.ok(&["rules", "load", &new, "--order", "big", "--match", "exact"]);
    let full = t0.elapsed();

    let mut outcomes = Vec::new();
    for fraction in [0.15, 0.4, 0.65, 0.9] {
        b.ok(&["rules", "load", &old, "--order", "big", "--match", "exact"]);
        let g_old = generation(&b);
        let mut child = Command::new(&b.bin)
            .arg("--bpffs")
            .arg(&b.bpffs)
            .arg("--state-dir")
            .arg(&b.state)
            .args(["rules", "load", &new, "--order", "big", "--match", "exact"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // Whatever the kernel enforces now is one whole set.
        let g = generation(&b);
        let new_in_force = g != g_old;
        for name in ["n7.old.test", "n99999.old.test"] {
            assert_eq!(
                blocked(&t, name),
                !new_in_force,
                "{name} after a kill at {fraction} (generation {g_old} -> {g})"
            );
        }
        for name in ["n7.new.test", "n99999.new.test"] {
            assert_eq!(
                blocked(&t, name),
                new_in_force,
                "{name} after a kill at {fraction}"
            );
        }
        assert!(
            blocked(&t, "stable.test"),
            "a name in both lists stayed blocked"
        );

        // The next command recovers; kernel and records agree.
        b.ok(&["orders", "set", "--order", "big"]);
        for name in probes {
            let e: serde_json::Value =
                serde_json::from_str(&b.ok(&["explain", name, "--json"])).expect("json");
            assert_eq!(e["kernel_agrees"], true, "{name} after recovery: {e}");
        }
        let listed: serde_json::Value =
            serde_json::from_str(&b.ok(&["rules", "list", "--order", "big", "--json"]))
                .expect("json");
        assert_eq!(listed.as_array().expect("rules").len(), N + 1);
        outcomes.push((fraction, new_in_force));
    }
    // And a clean load still works afterwards.
    b.ok(&["rules", "load", &new, "--order", "big", "--match", "exact"]);
    assert!(blocked(&t, "n7.new.test") && !blocked(&t, "n7.old.test"));
    drop(dir);
    println!("full replacement {full:?}; kills (fraction, new set in force): {outcomes:?}");
}
