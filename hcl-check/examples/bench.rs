//! Times the full probe of this machine (the goal is under 100 ms):
//! `cargo run --release -p hcl-check --example bench [RUNS]`.

fn main() {
    let runs = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let mut t = hcl_check::bench(runs);
    t.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "hcl-check full probe, {runs} runs: min {:.2} ms, median {:.2} ms, max {:.2} ms (goal < 100 ms)",
        ms(t[0]),
        ms(t[t.len() / 2]),
        ms(t[t.len() - 1])
    );
}
