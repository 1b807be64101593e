//! Rebuild the XDP program when bpf-linker changes (as aya-template does).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found on PATH: run `cargo xtask setup`"),
    }
}
