//! The Python interop venv: a Python with nameko 2.14.1 from PyPI, the real peer that the interop
//! tests talk to.
//!
//! It lives in `target/interop-venv`, so git ignores it and `cargo clean` removes it, and it is
//! reused for as long as it still imports the right nameko. A python given in `NAMEKO_PYTHON` is
//! used instead when it qualifies, for machines where PyPI is out of reach. Every failure says
//! what failed and the two ways out: fix the Python installation or point `NAMEKO_PYTHON` at one
//! that works.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context, Result, bail};

/// The nameko release the interop tests are written against (see the wire reference).
pub(crate) const NAMEKO_VERSION: &str = "2.14.1";

/// Imports nameko, then compares the installed distribution's version: nameko 2.x has no
/// `__version__`. A mismatch exits with a message naming the version found.
const CHECK_SCRIPT: &str = "import importlib.metadata, sys\n\
import nameko\n\
found = importlib.metadata.version('nameko')\n\
sys.exit(0 if found == sys.argv[1] else 'found nameko ' + found)\n";

/// Returns the path of a python that has nameko [`NAMEKO_VERSION`]: `NAMEKO_PYTHON` when set,
/// otherwise the venv under `target/`, created on first use.
pub(crate) fn ensure(root: &Path) -> Result<PathBuf> {
    let fallback =
        format!("or set NAMEKO_PYTHON to a python that has nameko {NAMEKO_VERSION} installed");
    if let Some(given) = env::var_os("NAMEKO_PYTHON").filter(|value| !value.is_empty()) {
        let python = absolute_if_path(PathBuf::from(given));
        return match check(&python) {
            Ok(()) => {
                eprintln!(
                    "interop venv: using NAMEKO_PYTHON={} (nameko {NAMEKO_VERSION})",
                    python.display()
                );
                Ok(python)
            }
            Err(problem) => bail!(
                "NAMEKO_PYTHON={} cannot be used: {problem}; install it there with `{} -m pip \
                 install nameko=={NAMEKO_VERSION}`, or unset NAMEKO_PYTHON to let xtask create \
                 target/interop-venv",
                python.display(),
                python.display()
            ),
        };
    }

    let venv = root.join("target").join("interop-venv");
    let python = venv_python(&venv);
    if python.exists() {
        match check(&python) {
            Ok(()) => {
                eprintln!(
                    "interop venv: reusing {} (nameko {NAMEKO_VERSION})",
                    venv.display()
                );
                return Ok(python);
            }
            Err(problem) => {
                eprintln!(
                    "interop venv: {} is unusable ({problem}); recreating it",
                    venv.display()
                );
                std::fs::remove_dir_all(&venv)
                    .with_context(|| format!("cannot remove {}", venv.display()))?;
            }
        }
    }

    eprintln!(
        "interop venv: creating {} with nameko {NAMEKO_VERSION}",
        venv.display()
    );
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output();
    match created {
        Err(error) => bail!(
            "cannot run `python3` ({error}): install Python 3 with its venv module (e.g. \
             `apt-get install python3 python3-venv`), {fallback}"
        ),
        Ok(output) if !output.status.success() => bail!(
            "`python3 -m venv {}` failed ({}): {}; install the venv module (e.g. `apt-get \
             install python3-venv`), {fallback}",
            venv.display(),
            output.status,
            stderr_tail(&output)
        ),
        Ok(_) => {}
    }

    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("nameko=={NAMEKO_VERSION}"))
        .output()
        .with_context(|| format!("cannot run `{}`", python.display()))?;
    if !installed.status.success() {
        bail!(
            "`pip install nameko=={NAMEKO_VERSION}` into {} failed ({}): {}; check that PyPI \
             is reachable (or set PIP_INDEX_URL to a mirror) and that pip works in a venv (e.g. \
             `apt-get install python3-pip python3-venv`), {fallback}",
            venv.display(),
            installed.status,
            stderr_tail(&installed)
        );
    }
    check(&python).map_err(|problem| {
        anyhow::anyhow!(
            "pip installed nameko=={NAMEKO_VERSION} into {} but it does not import: {problem}; \
             {fallback}",
            venv.display()
        )
    })?;
    eprintln!("interop venv: ready at {}", venv.display());
    Ok(python)
}

/// Whether `python` runs and imports nameko [`NAMEKO_VERSION`]; the error says what it found.
fn check(python: &Path) -> std::result::Result<(), String> {
    check_with(Command::new(python))
}

fn check_with(mut python: Command) -> std::result::Result<(), String> {
    let output = python
        .args(["-c", CHECK_SCRIPT, NAMEKO_VERSION])
        .output()
        .map_err(|error| format!("cannot run it ({error})"))?;
    if output.status.success() {
        return Ok(());
    }
    // A traceback ends with the one line that matters, such as `ModuleNotFoundError: ...`.
    let stderr = String::from_utf8_lossy(&output.stderr);
    match stderr.lines().rev().find(|line| !line.trim().is_empty()) {
        Some(last) => Err(last.trim().to_owned()),
        None => Err(format!("it exited with {}", output.status)),
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Tests run with their crate directory as the working directory, so a relative path given here
/// must be made absolute; a bare command name is left for PATH lookup.
fn absolute_if_path(python: PathBuf) -> PathBuf {
    if python.components().count() > 1 && python.is_relative() {
        std::path::absolute(&python).unwrap_or(python)
    } else {
        python
    }
}

/// The last lines of a command's stderr: the end is where Python and pip put the actual error.
fn stderr_tail(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.trim().lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    if tail.is_empty() {
        "no error output".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_and_names_stay_names() {
        assert!(absolute_if_path(PathBuf::from("venv/bin/python")).is_absolute());
        assert_eq!(
            absolute_if_path(PathBuf::from("python3")),
            PathBuf::from("python3")
        );
        assert_eq!(
            absolute_if_path(PathBuf::from("/usr/bin/python3")),
            PathBuf::from("/usr/bin/python3")
        );
    }

    /// A directory holding an importable `nameko` package whose installed metadata says
    /// `version`, to put on PYTHONPATH ahead of anything really installed.
    fn fake_nameko(version: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!(
            "xtask-fake-nameko-{}-{version}",
            std::process::id()
        ));
        let dist_info = dir.join(format!("nameko-{version}.dist-info"));
        std::fs::create_dir_all(dir.join("nameko")).unwrap();
        std::fs::create_dir_all(&dist_info).unwrap();
        std::fs::write(dir.join("nameko").join("__init__.py"), "").unwrap();
        std::fs::write(
            dist_info.join("METADATA"),
            format!("Metadata-Version: 2.1\nName: nameko\nVersion: {version}\n"),
        )
        .unwrap();
        dir
    }

    fn python_with(path: &Path) -> Command {
        let mut python = Command::new("python3");
        python.env("PYTHONPATH", path);
        python
    }

    #[test]
    fn the_check_accepts_exactly_the_pinned_nameko() {
        let right = fake_nameko(NAMEKO_VERSION);
        let wrong = fake_nameko("2.12.0");
        let accepted = check_with(python_with(&right));
        let refused = check_with(python_with(&wrong));
        std::fs::remove_dir_all(&right).unwrap();
        std::fs::remove_dir_all(&wrong).unwrap();
        accepted.unwrap();
        assert_eq!(refused.unwrap_err(), "found nameko 2.12.0");
    }

    #[test]
    fn a_missing_python_is_refused() {
        let problem = check(Path::new("/nonexistent/bin/python")).unwrap_err();
        assert!(problem.starts_with("cannot run it"), "{problem}");
    }
}
