//! The executable a report and `doctor` name is the program that ran, not
//! the script or shim that was started (pyenv's `python3` is a bash script
//! that ends up exec'ing `versions/X/bin/python3.X`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A shim of pyenv's shape: `#!/usr/bin/env bash`, exec'ing a second script
/// that execs `python3` (itself pyenv's shim where pyenv is installed).
fn shim(dir: &Path) -> PathBuf {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let inner = write("pyenv-exec", "#!/usr/bin/env bash\nset -e\nexec python3 \"$@\"\n".to_owned());
    write("python3", format!("#!/usr/bin/env bash\nset -e\nexec \"{}\" \"$@\"\n", inner.display()))
}

/// The interpreter `python3` runs, as the kernel names it.
fn python_binary() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import os, sys; print(os.path.realpath(sys.executable))"])
        .output()
        .expect("python3 is needed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn a_report_names_the_program_a_shim_ran() {
    let dir = tempfile::tempdir().unwrap();
    let shim = shim(dir.path());
    let spool = dir.path().join("spool");
    let mut cmd = crashwatch(&spool);
    cmd.args(["run", "--"]).arg(&shim).args(["-c", "import sys; print('bye'); sys.exit(3)"]);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(&spool);
    assert_eq!(report["program"]["exe"], python_binary().to_str().unwrap());
    assert_eq!(report["program"]["argv"][0], shim.to_str().unwrap());
}

#[test]
fn doctor_follows_a_shim_to_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let shim = shim(dir.path());
    let out = run_with_timeout(
        {
            let mut cmd = crashwatch(&dir.path().join("spool"));
            cmd.arg("doctor").arg(&shim);
            cmd
        },
        LIMIT,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.contains(" symbols ")).unwrap_or_else(|| panic!("{text}"));
    let python = python_binary();
    assert!(
        line.contains(&format!("{} is a script that runs {}: {}", shim.display(), python.display(), python.display())),
        "{line}"
    );
}
