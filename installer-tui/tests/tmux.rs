//! The real binary in a real terminal: tmux at 80x24 with TERM=vt100,
//! keystrokes by send-keys, screens read by capture-pane, on the recorded
//! laptop (--fixture implies --dry-run: nothing is written).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    name: String,
}

impl Tmux {
    fn start(name: &str, term: &str, args: &str) -> Tmux {
        let bin = env!("CARGO_BIN_EXE_installer-tui");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/laptop");
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", name])
            .status();
        let cmd = format!(
            "TERM={term} {bin} --fixture {} {args}; echo INSTALLER-EXIT=$?; sleep 60",
            fixture.display()
        );
        let st = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "80",
                "-y",
                "24",
                &cmd,
            ])
            .status()
            .unwrap();
        assert!(st.success());
        Tmux { name: name.into() }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `text` is on screen (the deadline only guards a hang).
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            // a frame may be captured half drawn: wait for two equal captures
            if s.contains(text) {
                std::thread::sleep(Duration::from_millis(150));
                if self.screen() == s {
                    return s;
                }
                continue;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("{text:?} never appeared; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let st = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn text(&self, t: &str) {
        let st = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", t])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn interactive_dry_run_install_by_keystrokes_at_80x24_vt100() {
    let t = Tmux::start("bulkhead-tui-test-1", "vt100", "");
    t.wait_for("Welcome to Bulkhead");
    // the help line is the last row drawn
    let s = t.wait_for("Enter: start");
    assert!(s.contains("DRY RUN"), "{s}");
    assert!(
        s.contains("+----") && s.is_ascii(),
        "vt100: ASCII drawing only:\n{s}"
    );
    assert!(s.lines().count() <= 24);
    t.keys(&["Enter"]);
    t.wait_for("Keyboard layout");
    t.keys(&["Tab", "Down", "Down", "Enter"]);
    let s = t.wait_for("Requirements (hcl-check)");
    assert!(s.contains("PASS") && s.contains("IOMMU"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("What is on it now");
    assert!(
        s.contains("Samsung SSD 980 PRO") && s.contains("CANNOT USE"),
        "{s}"
    );
    // Esc goes back, Enter comes again
    t.keys(&["Escape"]);
    t.wait_for("Requirements (hcl-check)");
    t.keys(&["Enter"]);
    t.wait_for("What is on it now");
    // the live medium is refused
    t.keys(&["Down", "Down", "Enter"]);
    t.wait_for("This disk cannot be used");
    t.keys(&["Up", "Up", "Enter"]);
    t.wait_for("Disk encryption passphrase");
    t.text("correct horse battery staple");
    t.keys(&["Tab"]);
    t.text("correct horse battery staple");
    let s = t.wait_for("the two entries match");
    assert!(
        !s.contains("correct horse"),
        "the passphrase is echoed:\n{s}"
    );
    t.keys(&["Enter"]);
    t.wait_for("dom0 user");
    t.text("alice");
    t.keys(&["Tab", "Tab"]);
    t.text("pw1");
    t.keys(&["Tab"]);
    t.text("pw1");
    t.keys(&["Enter"]);
    t.wait_for("Time zone (the clock");
    t.keys(&["Down", "Down", "Enter"]);
    t.wait_for("[x] AppVMs");
    t.keys(&["Down", "Space", "Enter"]);
    let s = t.wait_for("The plan (nothing written yet)");
    assert!(
        s.contains("keyboard de") && s.contains("Europe/Berlin"),
        "{s}"
    );
    assert!(s.contains("sys-usb no") && s.contains("ERASES"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("EVERYTHING ON THIS DISK WILL BE ERASED");
    t.text("/dev/sda");
    t.keys(&["Enter"]);
    t.wait_for("Type /dev/nvme0n1 exactly");
    t.keys(&[
        "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace",
    ]);
    t.text("/dev/nvme0n1");
    t.keys(&["Enter"]);
    let s = t.wait_for("Dry run finished: nothing was written");
    assert!(s.lines().count() <= 24);
    t.keys(&["Enter"]);
    t.wait_for("INSTALLER-EXIT=0");
}

#[test]
fn quit_from_a_linux_console_terminal() {
    let t = Tmux::start("bulkhead-tui-test-2", "linux", "");
    t.wait_for("Welcome to Bulkhead");
    t.keys(&["Enter"]);
    t.wait_for("Keyboard layout");
    t.keys(&["C-c"]);
    t.wait_for("INSTALLER-EXIT=0");
}
